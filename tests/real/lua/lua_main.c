/*
 * lua_main.c: a small stand-in for Lua's `lua.c`, which the lua-src crate
 * does not ship. Usage: lua_main SCRIPT [ARGS...]. It opens the standard
 * libraries, sets the global `arg` table as lua.c does (arg[0] = SCRIPT,
 * arg[1..] = ARGS), runs SCRIPT with a traceback on error, and exits with
 * status 0, or 1 after printing the error to stderr.
 */
#include <stdio.h>
#include <stdlib.h>

#include "lauxlib.h"
#include "lua.h"
#include "lualib.h"

static int traceback(lua_State *state)
{
    const char *message = lua_tostring(state, 1);
    if (message == NULL)
        message = lua_pushfstring(state, "(error object is a %s value)",
                                  luaL_typename(state, 1));
    luaL_traceback(state, state, message, 1);
    return 1;
}

static int run_script(lua_State *state, int argc, char **argv)
{
    lua_createtable(state, argc - 1, 1);
    for (int i = 1; i < argc; i++) {
        lua_pushstring(state, argv[i]);
        lua_rawseti(state, -2, i - 1);
    }
    lua_setglobal(state, "arg");

    lua_pushcfunction(state, traceback);
    int handler = lua_gettop(state);
    if (luaL_loadfile(state, argv[1]) != LUA_OK)
        return 0;
    for (int i = 2; i < argc; i++)
        lua_pushstring(state, argv[i]);
    return lua_pcall(state, argc - 2, 0, handler) == LUA_OK;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s SCRIPT [ARGS...]\n", argv[0]);
        return 2;
    }
    lua_State *state = luaL_newstate();
    if (state == NULL) {
        fprintf(stderr, "lua_main: cannot create a Lua state\n");
        return 1;
    }
    luaL_openlibs(state);
    int ok = run_script(state, argc, argv);
    if (!ok) {
        fprintf(stderr, "lua_main: %s\n", lua_tostring(state, -1));
    }
    fflush(stdout);
    lua_close(state);
    return ok ? EXIT_SUCCESS : EXIT_FAILURE;
}
