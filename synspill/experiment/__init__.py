"""Declarative studies: a TOML file of datasets x methods x model sizes -> cells -> one report."""
