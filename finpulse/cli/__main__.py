from finpulse.cli import app

app()
