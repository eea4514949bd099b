/* The second module: it calls `add` from greet.o (bound through the
 * namespace, as if the two had been linked together) and `host_log`, which
 * the Rust program exports. */
int add(int a, int b);
void host_log(const char *message, int value);

int sum_of_squares(int a, int b) {
    int result = add(a * a, b * b);
    host_log("use.o computed", result);
    return result;
}
