"""What a person types and reads: checked command-line values, user files with one-line errors, figures written whole, the live dashboard."""
