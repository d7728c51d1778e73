// The real IoT Agent code as an in-process oracle for property tests (driven by tests/support/javascript.py).
//
// Reads one JSON array per line, `[op, ...args]`, and answers one line `@@<json>` (the agents' own
// logging goes to stdout too, so answers carry a marker). Ops:
//   ["json_parse", text]
//       -> {"ok": true|false}: whether JavaScript's JSON.parse takes the text.
//   ["agent_request", format, payload, entityName, entityType, types]
//       -> {"url": ..., "body": ...}: the exact Orion request iotagent-node-lib makes of one MQTT
//          payload ("json" or "ul") of a device provisioned with `timestamp: true` and the attribute
//          types in `types` ({name: type}), as the agents' bindings hand it over; the request is
//          captured instead of sent.
// argv[2] is the installed iotagent-ul folder: its ulParser and its iotagent-node-lib are used.
'use strict';

const path = require('path');
const readline = require('readline');

const home = path.resolve(process.argv[2]);
const lib = path.join(home, 'node_modules', 'iotagent-node-lib', 'lib');

// Capture requests instead of sending them: the request shim is replaced before the library loads it.
let captured = null;
const shim = require.resolve(path.join(lib, 'request-shim'));
require.cache[shim] = {
    id: shim,
    filename: shim,
    loaded: true,
    exports: function request(options, callback) {
        captured = options;
        callback(null, { statusCode: 204, headers: {} }, undefined);
    }
};

require(path.join(home, 'node_modules', 'logops')).setLevel('FATAL');
const commonConfig = require(path.join(lib, 'commonConfig'));
commonConfig.setConfig({
    contextBroker: { url: 'http://orion.invalid:1026', ngsiVersion: 'v2' },
    service: 'edgegw',
    subservice: '/river',
    deviceRegistry: { type: 'memory' },
    types: {},
    timestamp: true
});
const entities = require(path.join(lib, 'services', 'ngsi', 'entities-NGSI-v2'));
const ulConfig = require(path.join(home, 'lib', 'configService'));
ulConfig.setLogger(require(path.join(home, 'node_modules', 'iotagent-node-lib')).logModule);
ulConfig.setConfig({});
const ulParser = require(path.join(home, 'lib', 'ulParser'));

// What both agents' bindings do before calling the library: one {name, type, value} per measure key,
// the type from the provisioning, DateTime for TimeInstant, else Text (guessType in commonBindings.js).
function attributes(measure, types) {
    return Object.keys(measure).map((name) => ({
        name,
        type: types[name] || (name === 'TimeInstant' ? 'DateTime' : 'Text'),
        value: measure[name]
    }));
}

function agentRequest(format, payload, entityName, entityType, types, answer) {
    let measures;
    if (format === 'ul') {
        measures = ulParser.parse(payload);
    } else {
        const parsed = JSON.parse(payload);
        measures = Array.isArray(parsed) ? parsed : [parsed];
    }
    const values = measures.map((m) => attributes(m, types));
    const typeInformation = {
        name: entityName,
        type: entityType,
        service: 'edgegw',
        subservice: '/river',
        timestamp: true,
        active: Object.keys(types).map((name) => ({ name, object_id: name, type: types[name] })),
        staticAttributes: [],
        lazy: [],
        commands: [],
        explicitAttrs: false
    };
    captured = null;
    entities.sendUpdateValue(entityName, values.length === 1 ? values[0] : values, typeInformation, null, (error) => {
        if (error) {
            answer({ error: String(error) });
        } else {
            answer({ url: captured.url, body: JSON.stringify(captured.json) });
        }
    });
}

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
    const answer = (doc) => process.stdout.write('@@' + JSON.stringify(doc) + '\n');
    try {
        const [op, ...args] = JSON.parse(line);
        if (op === 'json_parse') {
            try {
                JSON.parse(args[0]);
                answer({ ok: true });
            } catch (e) {
                answer({ ok: false });
            }
        } else if (op === 'agent_request') {
            agentRequest(...args, answer);
        } else {
            answer({ error: 'unknown op ' + op });
        }
    } catch (e) {
        answer({ error: String(e && e.stack ? e.stack : e) });
    }
});
