"""Measuring runs: ir-measures values, paired tests."""
