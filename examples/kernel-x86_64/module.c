/* A module for the kernel: it calls `kernel_print`, which the kernel exports,
 * and gives the kernel an answer. */
void kernel_print(const char *text);

int module_answer(int question) {
    kernel_print("hello from module.o");
    return question * 6;
}
