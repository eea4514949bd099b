/* The first module: it defines `add`, for the program and for modules
 * loaded after it. */
int add(int a, int b) { return a + b; }
