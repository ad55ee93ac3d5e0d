"""Face dataset formats: manifest folders, identity-per-subfolder folders, RecordIO."""
