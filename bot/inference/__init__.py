"""Runs transformers models off the event loop: queues, micro-batches, one worker per model."""
