"""Dataset generators. Each writes a manifest dataset through ``facefoundry.data.writer``."""
