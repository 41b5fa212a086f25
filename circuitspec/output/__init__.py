"""What a person reads: the interactive report page (and, after the planned move, the
diagram, the text reports and the console tables)."""
