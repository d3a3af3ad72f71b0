"""A step-sized load test: simulated GPU judges (``simjudge``) and the runner behind
``cat-reward loadtest`` (``runner``). Loopback only, bounded in count and time."""
