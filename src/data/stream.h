// Images that live in files and are decoded when a batch needs them (image folders): the
// interface the Loader's read-ahead works on. Torch-free.
#pragma once
#include <cstdint>
#include <string>

namespace unravel::data {

class ImageStream {
 public:
  virtual ~ImageStream() = default;
  virtual int64_t size() const = 0;  // items
  virtual int64_t channels() const = 0;
  virtual int64_t height() const = 0;
  virtual int64_t width() const = 0;
  // Writes item `item` as C x H x W uint8 into `out`: the evaluation transform, or, when
  // `augment`, the training transform drawn from a generator seeded with `seed`. Thread-safe.
  // An unreadable file is a UserError naming it, unless the stream skips bad files: then it
  // returns false and counts the file (skipped()).
  virtual bool load(int64_t item, uint8_t* out, bool augment, uint64_t seed) const = 0;
  virtual int64_t skipped() const = 0;        // files skipped so far (skip-bad)
  virtual std::string describe(int64_t item) const = 0;  // the file behind an item, for messages
};

}  // namespace unravel::data
