"""Helpers of the gateway tests: a real upstream process, signed test tokens, process control."""
