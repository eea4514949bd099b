/* Refused: nothing defines no_such_function. */
extern void no_such_function(void);

void unresolved_entry(void) { no_such_function(); }
