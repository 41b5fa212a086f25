"""Path patching: the shared vocabulary (heads, senders, receivers), the engines behind one protocol,
and the public path_patch API."""
