"""Sentiment: VADER weak labels, transformer classifiers, Ray Train fine-tuning, Ray Data scoring."""
