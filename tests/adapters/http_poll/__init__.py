"""Tests of the http_poll adapter."""
