# dst_grammar(DIR): rules that generate DIR/parse.c, DIR/parse.h (Bison) and
# DIR/lex.c (re2c) from grammar/. Used by the compiler and by the fuzzer,
# which compiles the front end again with its own flags.
function(dst_grammar dir)
  file(MAKE_DIRECTORY ${dir})
  add_custom_command(
    OUTPUT ${dir}/parse.c ${dir}/parse.h
    COMMAND ${BISON_EXE} -Wall -Werror --no-lines -o ${dir}/parse.c --header=${dir}/parse.h
            ${PROJECT_SOURCE_DIR}/grammar/parse.y
    DEPENDS ${PROJECT_SOURCE_DIR}/grammar/parse.y
    COMMENT "bison parse.y")
  add_custom_command(
    OUTPUT ${dir}/lex.c
    COMMAND ${RE2C} -W -Werror --no-generation-date --no-version -o ${dir}/lex.c
            ${PROJECT_SOURCE_DIR}/grammar/lex.re
    DEPENDS ${PROJECT_SOURCE_DIR}/grammar/lex.re
    COMMENT "re2c lex.re")
  # Generated code is not held to our warning flags.
  set_source_files_properties(${dir}/parse.c ${dir}/lex.c PROPERTIES
    COMPILE_OPTIONS "-Wno-unused-but-set-variable;-Wno-shadow")
endfunction()
