/*
 * The floor of scripts/bench-sqlite.sh: a main that does nothing, linked
 * natively as the SQLite program is, and run through `modload run`. Their
 * times are what each way of starting a program costs before any module is
 * loaded or any work is done.
 */
int main(void)
{
    return 0;
}
