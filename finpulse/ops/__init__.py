"""Operations on a deployed FinPulse: backups of its registry (PostgreSQL) and objects (S3) and their restore."""
