"""`catdog report`: a static site of what catdog found in an OUT, browsable from disk, a web server or
a bucket."""
