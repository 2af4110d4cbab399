"""The simulated 3-camera tea-bag task: MuJoCo environment, scripted expert, start positions of the recording protocol, and the sim plant actor."""
