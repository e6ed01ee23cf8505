// Output files (--json, --csv and the files of run directories): how a path is written, the
// check commands run before long work, and the removal of temp files orphaned by killed runs.
// Torch-free. Errors are one line starting with "FLAG PATH: " (the caller names the flag).
#pragma once
#include <cstddef>
#include <string>

namespace unravel {

// The output policy of write_output_file (and of write_file_atomic in util.h, which has no "-"):
//   "-"                      standard output (std::cout, flushed)
//   a directory              refused: "FLAG PATH: is a directory"; a socket likewise
//   a character / block device or FIFO   written through: opened O_WRONLY without O_CREAT or
//                            O_TRUNC, written, closed (a FIFO waits for its reader, as a shell's
//                            ">" does; a reader that leaves early is an error, not SIGPIPE)
//   a symlink                followed (a chain too, relative targets from the link's directory)
//                            and the policy applied to the final target, which may be missing if
//                            its directory exists: the link stays a link
//   a regular file or none   TARGET.tmp.PID in the target's directory, fsync, rename over TARGET
//                            (an existing target keeps its permission bits)
// flag_name ("--json") starts the error lines; empty: they start "cannot write PATH: ".
void write_output_file(const std::string& path, const std::string& content,
                       const std::string& flag_name = "");

// Checks, without writing PATH, that write_output_file(PATH) can succeed later: "-" is always
// fine; an existing target must not be a directory or socket (a device / FIFO must be writable);
// otherwise the target's directory must exist and accept a new file, which is proven by creating
// and removing the very temp file the write would use (access() says yes to root on a read-only
// mount). Throws UserError: "--json /missing/dir/x.json: directory /missing/dir does not exist".
void check_output_path(const std::string& path, const std::string& flag_name);

// True when PATH names a regular file or none yet (after following links): a target that files
// next to it (e.g. PATH.partial progress files) can accompany. False for "", "-", devices, FIFOs.
bool is_regular_output(const std::string& path);

// The temp file write_output_file uses for a regular target: "TARGET.tmp.PID".
std::string temp_path_for(const std::string& target);

// Removes the regular files of DIR named "NAME.tmp.PID" (NAME non-empty, PID decimal) whose PID is
// our own or no live process (kill(PID, 0) fails with ESRCH); nothing else is touched, links and
// directories included. Call it when a run directory is opened, before this process writes
// there: a temp file of our own pid is taken for an orphan. Best effort: never throws (a missing
// or unreadable DIR removes nothing). Returns the number of files removed. A process of another
// pid namespace sharing DIR looks dead.
std::size_t remove_stale_temp_files(const std::string& dir);

}  // namespace unravel
