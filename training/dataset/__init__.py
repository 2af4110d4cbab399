"""LeRobot-format datasets: recording from the sim, summaries, image statistics."""
