"""What several lessons share: the Redis connection, job events, the course's expected output."""
