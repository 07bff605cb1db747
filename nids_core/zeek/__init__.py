"""Reading Zeek conn logs: native TSV, Zeek JSON lines and CSV files."""
