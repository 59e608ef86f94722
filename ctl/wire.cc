namespace ringfwd::wire {}
