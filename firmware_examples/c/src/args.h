/* The command line: a command word, settings flags (settings.h), task options (task.h, params.h)
 * and the program's own options. Every bad value is refused with a message naming the option.
 * Single-threaded. */
#ifndef EDGE_ARGS_H
#define EDGE_ARGS_H

#include "settings.h"
#include "task.h"
#include "util.h"

typedef enum { CMD_SEND, CMD_ENCODE, CMD_ENCODE_ARRAY, CMD_VERIFY, CMD_HELP } command_t;

typedef struct {
    command_t command;
    const char *env_path;
    int env_given;
    settings_t settings;
    task_spec task;
    double wait_timeout_s;
    int json;
    double every_s; /* 0: one task */
    const char *sensor_file;
    int window;
    const char *operand; /* encode-array's spec, verify's hex */
    const char *expect_id;
} options_t;

extern const char USAGE[];

int args_parse(options_t *o, int argc, char **argv, err_t *err);
void args_free(options_t *o);
/* "1s", "500ms", "2m", "1.5" (seconds) to seconds; -1 if malformed. */
double parse_period(const char *text);

#endif
