"""A Discord bot that runs Hugging Face models in-process."""

import os

# Progress bars are for notebooks; a bot's log wants one line per model. GGUF loading uses
# plain tqdm, which reads this variable once, when it is first imported.
os.environ.setdefault("TQDM_DISABLE", "1")
