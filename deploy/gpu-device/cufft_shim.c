/* Stand-in for libcufft.so.11: ASTRA links five cuFFT symbols for FBP/FDK filtering,
   which sxtdist never calls. Each returns CUFFT_NOT_SUPPORTED (16). */
typedef int cufftResult;
typedef int cufftHandle;
cufftResult cufftPlan1d(cufftHandle *plan, int nx, int type, int batch) { (void)plan; (void)nx; (void)type; (void)batch; return 16; }
cufftResult cufftExecR2C(cufftHandle plan, void *in, void *out) { (void)plan; (void)in; (void)out; return 16; }
cufftResult cufftExecC2R(cufftHandle plan, void *in, void *out) { (void)plan; (void)in; (void)out; return 16; }
cufftResult cufftDestroy(cufftHandle plan) { (void)plan; return 16; }
cufftResult cufftSetStream(cufftHandle plan, void *stream) { (void)plan; (void)stream; return 16; }
