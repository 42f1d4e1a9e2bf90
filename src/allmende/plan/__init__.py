"""Desired against observed: the changes that would bring each host to the inventory."""
