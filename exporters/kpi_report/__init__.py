"""The monthly modernization KPI report: queries the central store and writes xlsx, csv, html and json (issue 9)."""
