"""The web app: the tutorials' Gradio chat, an analysis page and a dashboard for operators.

It is another front door beside the cogs: it calls the same services and never imports
discord. Needs the ``web`` extra (gradio).
"""

import os

# No analytics or telemetry calls home (and no internet on many hosts): set before gradio
# or huggingface_hub is imported.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
