"""A Discord bot that runs Hugging Face models in-process."""
