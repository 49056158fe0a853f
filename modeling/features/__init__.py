"""Feature networks for video metrics, one module each (imported directly, since
each pulls in a heavy library and a worker needs only one):

* ``i3d``: I3D Kinetics-400 logits for FVD;
* ``c3d``: C3D UCF-101 classifier for Inception Score;
* ``inception``: Inception-v3 pool features for FID on frames;
* ``clip``: open_clip encoders for CLIPSIM;
* ``checkpoint``: safe weight loading shared by all of them.

Weights always come from a local path (or an open_clip tag resolved from its
cache); see each module for the checkpoint layouts it accepts.
"""
