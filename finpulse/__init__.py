"""FinPulse."""
