"""Mosquitto security generated from the database: config, password file, ACL."""
