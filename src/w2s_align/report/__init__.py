"""Reporting: summary tables and figures across runs."""
