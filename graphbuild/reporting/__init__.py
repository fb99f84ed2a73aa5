"""Reporting: turn execution events and results into text for people or JSON for machines."""
