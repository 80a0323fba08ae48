-- Rate-limit windows (fixed windows, one row per bucket and window start, unix seconds).
-- PostgreSQL deployments count here, so every replica shares one budget; SQLite processes
-- count in memory and keep the table empty. The janitor drops old windows.
CREATE TABLE rate_limits (
    bucket TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    hits BIGINT NOT NULL,
    PRIMARY KEY (bucket, window_start)
);
