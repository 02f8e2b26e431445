"""Operations: backups and restores, the alerting rules against /metrics, the load bench."""
