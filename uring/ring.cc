namespace ringfwd {}
