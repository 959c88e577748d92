"""Test, benchmark and dev harness for tradingsystem. Never installed into the image."""
