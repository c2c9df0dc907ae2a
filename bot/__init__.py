"""A Discord bot that runs Hugging Face models in-process."""

import os

# Progress bars are for notebooks; a bot's log wants one line per model. GGUF loading uses
# plain tqdm, which reads this variable once, when it is first imported. `models download`
# on a terminal turns them back on (bot.inference.loading.show_hub_progress), unless the
# operator set the variable.
TQDM_DISABLE_IS_OURS = "TQDM_DISABLE" not in os.environ
os.environ.setdefault("TQDM_DISABLE", "1")
