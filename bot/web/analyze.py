"""The analyze tab: sentiment with the emotion distribution, and summaries of texts or files."""

from __future__ import annotations

import asyncio
from pathlib import Path

import gradio as gr
import pandas as pd

from bot.errors import InvalidInputError
from bot.services.sentiment import SentimentService
from bot.services.summaries import MAX_MAX_LENGTH, MAX_TEXT_CHARS, SummaryService
from bot.web.errors import friendly

# Read at most this much of an upload: anything longer is refused by the summarizer anyway,
# and a huge file must not be loaded into memory to find that out.
MAX_UPLOAD_BYTES = 4 * MAX_TEXT_CHARS + 4
MIN_SUMMARY_TOKENS = 20


def read_upload(path: str) -> str:
    """The text of an uploaded file (UTF-8), or a friendly error (slow: off the event loop)."""
    with Path(path).open("rb") as file:
        data = file.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise InvalidInputError(
            f"That file is too long to summarise here (the limit is {MAX_TEXT_CHARS} characters)."
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInputError(
            "That file is not UTF-8 text - upload a .txt or .md file, or paste the text."
        ) from None


class Analysis:
    """Handlers of the analyze tab."""

    def __init__(self, sentiment: SentimentService, summaries: SummaryService) -> None:
        self._sentiment = sentiment
        self._summaries = summaries

    async def sentiment(self, text: str) -> tuple[str, pd.DataFrame]:
        """The sentiment label and the emotion distribution of a text."""
        result = await self._sentiment.analyze(text)
        emotions = await self._sentiment.analyze(text, emotions=True)
        label = f"**{result.label}** ({result.score:.0%} confident)"
        table = pd.DataFrame(
            {
                "emotion": [e.label for e in emotions.emotions],
                "score": [round(e.score, 4) for e in emotions.emotions],
            }
        )
        return label, table

    async def summarize(self, text: str, upload: str | None, max_length: float) -> str:
        """A summary of the uploaded file, else of the pasted text."""
        if upload:
            text = await asyncio.to_thread(read_upload, upload)
        summary = await self._summaries.summarize_text(text or "", max_length=int(max_length))
        return summary.text


def analyze_tab(sentiment: SentimentService, summaries: SummaryService) -> None:
    """The analyze tab's components and events (call inside a gr.Blocks)."""
    analysis = Analysis(sentiment, summaries)
    with gr.Row(equal_height=False):
        with gr.Column():
            gr.Markdown("### Sentiment")
            text = gr.Textbox(label="Text", lines=4, max_length=4000, elem_id="sentiment-text")
            run = gr.Button("Analyse sentiment", variant="primary", elem_id="sentiment-run")
            label = gr.Markdown(elem_id="sentiment-label")
            chart = gr.BarPlot(
                x="emotion", y="score", title="Emotions", sort="-y", y_lim=[0, 1], height=260
            )
        with gr.Column():
            gr.Markdown("### Summary")
            source = gr.Textbox(label="Text to summarise", lines=6, max_length=MAX_TEXT_CHARS)
            upload = gr.File(label="...or a text file", file_types=[".txt", ".md"], type="filepath")
            length = gr.Slider(
                MIN_SUMMARY_TOKENS,
                MAX_MAX_LENGTH,
                value=130,
                step=10,
                label="Longest summary (tokens)",
            )
            summarize = gr.Button("Summarise", variant="primary")
            summary = gr.Textbox(label="Summary", lines=4, interactive=False)
    run.click(
        friendly(analysis.sentiment),
        [text],
        [label, chart],
        api_name="sentiment",
        concurrency_limit=None,
    )
    summarize.click(
        friendly(analysis.summarize),
        [source, upload, length],
        [summary],
        api_name="summarize",
        concurrency_limit=None,
    )
