/* sampler.c: being written */
