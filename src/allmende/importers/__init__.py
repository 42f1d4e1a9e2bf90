"""Importers: what is already running (compose projects, HAProxy configs) becomes inventory YAML.

Pure mapping: the importers read the files they are given and return data, notes and the YAML
text to write; deciding what to write where (merging, secrets, validation) is
``allmende.actions.importing``'s job.
"""
