"""Next-day forecasting: windows, the LSTM, Ray Train/Tune shells, walk-forward evaluation, promotion."""
