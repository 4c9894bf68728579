"""The acoustic self-test of the clusters (issue 17): commands, results, events, schedule."""
