"""SUPERB through s3prl: task table, data-layout checks, runner, results, submission."""
