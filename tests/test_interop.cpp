// Reading PyTorch files without torch (src/interop). Sections:
//   1. against torch.load: files that Python's torch 1.13 writes at test time (state dicts of
//      resnet18 in every form, TorchScript, legacy, dtypes and views) and one that libtorch's
//      torch::pickle_save wrote (a committed seed file); names, dtypes, shapes, strides, offsets,
//      shared storages and every element byte must match what torch.load reports.
//   2. the seed corpora of the fuzz harnesses read as what they are.
//   3. hostile inputs, built here byte by byte: each fails with one short line, within a second.
#include <gtest/gtest.h>

#include <ctime>
#include <nlohmann/json.hpp>
#include <zlib.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>

#include "core/errors.h"
#include "interop/torch_file.h"
#include "testing.h"

using namespace unravel;
using namespace unravel::interop;
namespace fs = std::filesystem;
namespace ut = unravel::testing;

namespace {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "unravel_test_interop_XXXXXX").string();
    if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() { fs::remove_all(path_); }
  fs::path operator/(const std::string& name) const { return path_ / name; }
  std::string str() const { return path_.string(); }

 private:
  fs::path path_;
};

bool python_torch_available() {
  return std::system("/usr/bin/python3 -c 'import torch, torchvision' >/dev/null 2>&1") == 0;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Shared by every fixture script: the oracle is what torch itself loads from each file.
const char* kPythonPrelude = R"PY(
import collections, copy, json, sys, torch
out = sys.argv[1]

def raw(t):
    t = t.detach()
    if t.is_complex():
        t = torch.view_as_real(t)
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()

def describe(named, binfile):
    """[(name, tensor)] in order -> metadata, and their bytes appended to binfile."""
    groups, meta = {}, []
    with open(binfile, 'ab') as f:
        for i, (k, t) in enumerate(named):
            s = t.storage()
            key = (s.data_ptr(), s.size()) if s.size() else ('empty', i)
            pos = f.tell()
            b = raw(t)
            f.write(b)
            meta.append({'name': k, 'dtype': str(t.dtype).replace('torch.', ''), 'sizes': list(t.shape),
                         'strides': list(t.stride()), 'offset': t.storage_offset(),
                         'requires_grad': t.requires_grad, 'group': groups.setdefault(key, i),
                         'pos': pos, 'nbytes': len(b)})
    return meta

expected = {}
)PY";

void run_python(const TempDir& dir, const std::string& body) {
  std::ofstream(dir / "fixture.py") << kPythonPrelude << body
                                    << "\njson.dump(expected, open(out + '/expected.json', 'w'))\n";
  const std::string cmd = "/usr/bin/python3 " + (dir / "fixture.py").string() + " " + dir.str() + " > " +
                          (dir / "python.log").string() + " 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << slurp(dir / "python.log");
}

// Compares tensors read by us with what torch.load reported for the same file.
void expect_same(const std::vector<NamedTensor>& ours, const nlohmann::json& want, const std::string& bin,
                 bool check_requires_grad, const std::string& what) {
  ASSERT_EQ(ours.size(), want.size()) << what;
  std::map<std::string, size_t> first_of_key;
  for (size_t i = 0; i < ours.size(); ++i) {
    const TensorRef& t = ours[i].tensor;
    const nlohmann::json& w = want[i];
    SCOPED_TRACE(what + ": tensor " + std::to_string(i) + " '" + ours[i].name + "'");
    ASSERT_EQ(ours[i].name, w["name"].get<std::string>());
    EXPECT_EQ(dtype_info(t.dtype).name, w["dtype"].get<std::string>());
    EXPECT_EQ(t.sizes, w["sizes"].get<std::vector<int64_t>>());
    EXPECT_EQ(t.strides, w["strides"].get<std::vector<int64_t>>());
    EXPECT_EQ(t.storage_offset, w["offset"].get<int64_t>());
    if (check_requires_grad) {
      EXPECT_EQ(t.requires_grad, w["requires_grad"].get<bool>());
    }
    // Storage sharing: tensors share a storage key exactly when torch says they share memory.
    const size_t first = first_of_key.emplace(t.storage_key, i).first->second;
    if (t.numel() > 0 || t.storage.size() > 0) {
      EXPECT_EQ(first, w["group"].get<size_t>());
    }
    const std::string bytes = t.contiguous_bytes();
    ASSERT_EQ(bytes.size(), w["nbytes"].get<size_t>());
    EXPECT_TRUE(bytes == bin.substr(w["pos"].get<size_t>(), bytes.size())) << "element bytes differ";
  }
}

std::vector<NamedTensor> timed_read(const std::string& path, TorchFileFormat format, bool state_dict) {
  const auto t0 = std::chrono::steady_clock::now();
  TorchFile f = read_torch_file(path);
  EXPECT_EQ(format_name(f.format()), std::string(format_name(format))) << path;
  // The tensors outlive the file: their owner keeps the bytes.
  std::vector<NamedTensor> out = state_dict ? state_dict_tensors(f) : named_tensors(f.root(), f.name(), {}, f.owner());
  for (auto& t : out) t.tensor.contiguous_bytes();  // element access is part of reading
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("  read %-40s %-12s %4zu tensors in %.3f s\n", fs::path(path).filename().c_str(), format_name(f.format()),
              out.size(), s);
  return out;
}

}  // namespace

// ------------------------------------------------------------------------------------------------
// 1. Against torch.load

TEST(InteropPyTorch, Resnet18StateDictInEveryForm) {
  if (!python_torch_available()) GTEST_SKIP() << "/usr/bin/python3 lacks torch/torchvision";
  TempDir dir;
  run_python(dir, R"PY(
import torchvision
torch.manual_seed(0)
m = torchvision.models.resnet18(num_classes=10)
with torch.no_grad():
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-1, 1); mod.running_var.uniform_(0.5, 2); mod.num_batches_tracked.fill_(7)
m.eval()
sd = m.state_dict()
m2 = copy.deepcopy(m).train()
opt = torch.optim.SGD(m2.parameters(), lr=0.1, momentum=0.9)
m2(torch.randn(2, 3, 32, 32)).sum().backward(); opt.step()
torch.save(sd, out + '/sd.pt')
torch.save({'state_dict': collections.OrderedDict(('module.' + k, v) for k, v in sd.items()), 'epoch': 3,
            'arch': 'resnet18', 'optimizer': opt.state_dict()}, out + '/nested.pt')
torch.save(sd, out + '/legacy.pt', _use_new_zipfile_serialization=False)
torch.jit.save(torch.jit.script(m), out + '/scripted.pt')
torch.jit.save(torch.jit.trace(m, torch.randn(1, 3, 32, 32)), out + '/traced.pt')
torch.save(m, out + '/model.pt')
loaded = {
    'sd.pt': torch.load(out + '/sd.pt'),
    'nested.pt': collections.OrderedDict((k[7:], v) for k, v in torch.load(out + '/nested.pt')['state_dict'].items()),
    'legacy.pt': torch.load(out + '/legacy.pt'),
    'scripted.pt': torch.jit.load(out + '/scripted.pt').state_dict(),
    'traced.pt': torch.jit.load(out + '/traced.pt').state_dict(),
    'model.pt': torch.load(out + '/model.pt').state_dict(),
}
for name, d in loaded.items():
    assert list(d) == list(sd) and all(torch.equal(d[k], sd[k]) for k in sd), name
    expected[name] = describe(list(d.items()), out + '/' + name + '.bin')
)PY");
  const std::map<std::string, TorchFileFormat> formats = {
      {"sd.pt", TorchFileFormat::Zip},          {"nested.pt", TorchFileFormat::Zip},
      {"legacy.pt", TorchFileFormat::Legacy},   {"scripted.pt", TorchFileFormat::TorchScript},
      {"traced.pt", TorchFileFormat::TorchScript}, {"model.pt", TorchFileFormat::Zip}};
  const nlohmann::json expected = nlohmann::json::parse(slurp(dir / "expected.json"));
  for (const auto& [name, format] : formats) {
    const std::vector<NamedTensor> ours = timed_read((dir / name).string(), format, /*state_dict=*/true);
    EXPECT_EQ(ours.size(), 122u) << name;  // resnet18's state_dict
    expect_same(ours, expected[name], slurp(dir / (name + ".bin")), /*check_requires_grad=*/false, name);
  }
  // The whole nested file: the optimizer's momentum buffers follow, keyed by parameter index.
  TorchFile nested = read_torch_file((dir / "nested.pt").string());
  const std::vector<NamedTensor> all = named_tensors(nested.root(), nested.name());
  ASSERT_EQ(all.size(), 122u + 62u);  // 62 parameters with a momentum buffer
  EXPECT_EQ(all[0].name, "state_dict.module.conv1.weight");
  EXPECT_EQ(all[122].name, "optimizer.state.0.momentum_buffer");
  EXPECT_EQ(nested.root().get("epoch")->integer, 3);
  EXPECT_EQ(nested.root().get("arch")->text, "resnet18");
}

TEST(InteropPyTorch, DTypesViewsAndContainersInEveryForm) {
  if (!python_torch_available()) GTEST_SKIP() << "/usr/bin/python3 lacks torch";
  TempDir dir;
  run_python(dir, R"PY(
torch.manual_seed(1)
base = torch.randn(3, 4)
d = collections.OrderedDict([
    ('f32', torch.randn(2, 3)), ('f64', torch.randn(4, dtype=torch.float64)),
    ('f16', torch.randn(5).half()), ('bf16', torch.randn(3).bfloat16()),
    ('c64', torch.randn(2, dtype=torch.complex64)), ('i64', torch.tensor([-7, 2**40, 2**62])),
    ('i32', torch.tensor([-5, 70000], dtype=torch.int32)), ('i16', torch.tensor([-300, 2], dtype=torch.int16)),
    ('i8', torch.tensor([-128, 127], dtype=torch.int8)), ('u8', torch.randint(0, 256, (7,), dtype=torch.uint8)),
    ('bool', torch.tensor([True, False, True])),
    ('base', base), ('transposed', base.t()), ('slice', base[1:, 1:3]), ('row', base[2]),
    ('empty_slice', base[3:]), ('expanded', torch.randn(2).expand(3, 2)),
    ('scalar', torch.tensor(2.5)), ('empty', torch.zeros(0, 3)), ('param', torch.nn.Parameter(torch.randn(2))),
    ('list', [torch.arange(3), torch.ones(1)]), ('tuple', (torch.eye(2),)),
    ('inner', {'x': torch.randn(2, 2), 'n': 5}), ('int_keys', {0: torch.full((2,), 3.0)}),
])

def flat(v, prefix):  # the naming convention: keys and indices joined with '.'
    join = lambda k: (prefix + '.' if prefix else '') + str(k)
    if isinstance(v, torch.Tensor): return [(prefix, v)]
    if isinstance(v, dict): return [x for k, w in v.items() for x in flat(w, join(k))]
    if isinstance(v, (list, tuple)): return [x for i, w in enumerate(v) for x in flat(w, join(i))]
    return []

for name, kw in [('zip.pt', {}), ('zip_p4.pt', {'pickle_protocol': 4}),
                 ('legacy.pt', {'_use_new_zipfile_serialization': False}),
                 ('legacy_p1.pt', {'_use_new_zipfile_serialization': False, 'pickle_protocol': 1})]:
    torch.save(d, out + '/' + name, **kw)
    expected[name] = describe(flat(torch.load(out + '/' + name), ''), out + '/' + name + '.bin')
)PY");
  const nlohmann::json expected = nlohmann::json::parse(slurp(dir / "expected.json"));
  for (const std::string name : {"zip.pt", "zip_p4.pt", "legacy.pt", "legacy_p1.pt"}) {
    const TorchFileFormat format = name.rfind("legacy", 0) == 0 ? TorchFileFormat::Legacy : TorchFileFormat::Zip;
    const std::vector<NamedTensor> ours = timed_read((dir / name).string(), format, /*state_dict=*/false);
    expect_same(ours, expected[name], slurp(dir / (name + ".bin")), /*check_requires_grad=*/true, name);
  }
}

// unravel's own checkpoints: libtorch's torch::pickle_save of a c10::Dict<std::string, Tensor>
// (tests/fuzz/corpus/torch_file/pickle_save.pt was written so, with one transposed tensor).
TEST(InteropPyTorch, ReadsWhatTorchPickleSaveWrote) {
  if (!python_torch_available()) GTEST_SKIP() << "/usr/bin/python3 lacks torch";
  const std::string file = std::string(UNRAVEL_TEST_SOURCE_DIR) + "/tests/fuzz/corpus/torch_file/pickle_save.pt";
  TempDir dir;
  run_python(dir, "d = torch.load('" + file + "')\nexpected['t'] = describe(list(d.items()), out + '/t.bin')\n");
  const nlohmann::json expected = nlohmann::json::parse(slurp(dir / "expected.json"));
  const std::vector<NamedTensor> ours = timed_read(file, TorchFileFormat::Zip, /*state_dict=*/true);
  expect_same(ours, expected["t"], slurp(dir / "t.bin"), /*check_requires_grad=*/true, "pickle_save.pt");
  ASSERT_EQ(ours.size(), 5u);
  EXPECT_EQ(ours[3].tensor.strides, (std::vector<int64_t>{1, 3}));  // the transposed one
  TorchFile f = read_torch_file(file);
  EXPECT_EQ(f.prefix(), "archive");
}

// ------------------------------------------------------------------------------------------------
// 2. The seed corpora are what they claim to be

TEST(InteropCorpus, EverySeedReads) {
  const fs::path corpus = fs::path(UNRAVEL_TEST_SOURCE_DIR) / "tests/fuzz/corpus";
  size_t files = 0;
  for (const auto& e : fs::directory_iterator(corpus / "torch_file")) {
    TorchFile f = read_torch_file(e.path().string());
    EXPECT_FALSE(named_tensors(f.root(), f.name()).empty()) << e.path();
    ++files;
  }
  for (const auto& e : fs::directory_iterator(corpus / "pickle")) {
    EXPECT_NO_THROW(unpickle(slurp(e.path()), e.path().string())) << e.path();
    ++files;
  }
  for (const auto& e : fs::directory_iterator(corpus / "zip")) {
    ZipArchive z = ZipArchive::open(e.path().string());
    for (const ZipEntry& entry : z.entries()) EXPECT_EQ(z.data(entry.name).size(), entry.size) << e.path();
    ++files;
  }
  EXPECT_GE(files, 25u);
  ZipArchive z64 = ZipArchive::open((corpus / "zip/zip64.zip").string());
  EXPECT_EQ(z64.data("big/entry"), [] { std::string s; for (int i = 0; i < 100; ++i) s += "zip64 "; return s; }());
  ZipArchive stored = ZipArchive::open((corpus / "zip/stored.zip").string());
  EXPECT_EQ(stored.data("empty"), "");
  EXPECT_EQ(stored.data("archive/data/0").substr(0, 8), std::string("\x01\x02\x03\x04\x01\x02\x03\x04"));
  ZipArchive deflated = ZipArchive::open((corpus / "zip/deflated.zip").string());
  EXPECT_EQ(deflated.find("archive/data/0")->method, 8);
  EXPECT_EQ(deflated.data("archive/data/0"), stored.data("archive/data/0"));
}

// ------------------------------------------------------------------------------------------------
// 3. Hostile inputs

namespace {

std::string le(uint64_t v, int bytes) {
  std::string s;
  for (int i = 0; i < bytes; ++i) s += static_cast<char>(i < 8 ? v >> (8 * i) : 0);  // no shift by >= 64
  return s;
}

std::string deflate_raw(const std::string& in) {
  z_stream zs{};
  deflateInit2(&zs, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&zs, in.size()), '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

struct ZipItem {
  std::string name, data;
  bool deflate = false;
  bool zip64 = false;                     // sizes in a zip64 extra field
  uint64_t declared_size = ~uint64_t{0};  // else data.size()
  uint16_t flags = 0;
};

// A zip archive written independently of the reader: local headers, central directory, EOCD.
std::string make_zip(const std::vector<ZipItem>& items) {
  std::string out, central;
  for (const ZipItem& it : items) {
    const std::string payload = it.deflate ? deflate_raw(it.data) : it.data;
    const uint64_t size = it.declared_size != ~uint64_t{0} ? it.declared_size : it.data.size();
    const uint32_t crc = static_cast<uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(it.data.data()), static_cast<uInt>(it.data.size())));
    std::string extra;
    uint64_t size32 = size, csize32 = it.deflate ? payload.size() : size;
    if (it.zip64) {
      extra = le(1, 2) + le(16, 2) + le(size, 8) + le(it.deflate ? payload.size() : size, 8);
      size32 = csize32 = 0xFFFFFFFF;
    }
    const std::string common = le(it.flags, 2) + le(it.deflate ? 8 : 0, 2) + le(0, 4) + le(crc, 4) + le(csize32, 4) +
                               le(size32, 4) + le(it.name.size(), 2) + le(extra.size(), 2);
    central += le(0x02014b50, 4) + le(45, 2) + le(45, 2) + common + le(0, 10) + le(out.size(), 4) + it.name + extra;
    out += le(0x04034b50, 4) + le(45, 2) + common + it.name + extra + payload;
  }
  const uint64_t cd = out.size();
  return out + central + le(0x06054b50, 4) + le(0, 4) + le(items.size(), 2) + le(items.size(), 2) +
         le(central.size(), 4) + le(cd, 4) + le(0, 2);
}

// Pickle pieces: BINUNICODE, GLOBAL, a LONG1 of 8 bytes, a tuple of them, a tensor rebuild.
std::string u(const std::string& s) { return "X" + le(s.size(), 4) + s; }
std::string g(const std::string& module, const std::string& name) { return "c" + module + "\n" + name + "\n"; }
std::string n64(int64_t v) { return std::string("\x8a\x08", 2) + le(static_cast<uint64_t>(v), 8); }
std::string tup(const std::vector<int64_t>& v) {
  std::string s = "(";
  for (int64_t x : v) s += n64(x);
  return s + "t";
}
std::string tensor_pkl(const std::string& cls, const std::string& key, int64_t numel, int64_t offset,
                       const std::vector<int64_t>& sizes, const std::vector<int64_t>& strides) {
  return g("torch._utils", "_rebuild_tensor_v2") + "((" + u("storage") + g("torch", cls) + u(key) + u("cpu") +
         n64(numel) + "tQ" + n64(offset) + tup(sizes) + tup(strides) + "\x89" + g("collections", "OrderedDict") + ")RtR";
}
std::string dict_pkl(const std::vector<std::pair<std::string, std::string>>& items) {
  std::string s = "\x80\x02}(";
  for (const auto& [k, v] : items) s += u(k) + v;
  return s + "u.";
}
std::string torch_zip(const std::string& pkl, const std::map<std::string, std::string>& storages) {
  std::vector<ZipItem> items = {{"archive/data.pkl", pkl}};
  for (const auto& [key, bytes] : storages) items.push_back({"archive/data/" + key, bytes});
  items.push_back({"archive/version", "3\n"});
  return make_zip(items);
}
std::string floats(std::initializer_list<float> v) {
  std::string s;
  for (float f : v) s.append(reinterpret_cast<const char*>(&f), 4);
  return s;
}

// Everything a reader of the file does: read, flatten, copy every element out.
size_t read_all(const std::string& bytes, const std::string& name = "hostile.pt") {
  TorchFile f = read_torch_file_bytes(std::make_shared<const std::string>(bytes), name);
  size_t n = 0;
  for (const NamedTensor& t : state_dict_tensors(f)) n += t.tensor.contiguous_bytes().size();
  return n;
}

// f must throw a UserError of one line of at most 300 characters containing `want`, within 1 s
// of CPU time (scaled under sanitizers, testing.h cpu_budget).
template <class F>
void expect_error(F&& f, const std::string& want, const std::string& what) {
  const auto t0 = std::clock();  // CPU time: a busy machine cannot fail it
  try {
    f();
    ADD_FAILURE() << what << ": read without an error";
  } catch (const UserError& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << what << ": " << msg;
    EXPECT_LE(msg.size(), 300u) << what << ": " << msg;
    EXPECT_NE(msg.find(want), std::string::npos) << what << ": '" << msg << "' lacks '" << want << "'";
  }
  EXPECT_LT(static_cast<double>(std::clock() - t0) / CLOCKS_PER_SEC, ut::cpu_budget(1.0)) << what;
}

std::string corpus_file(const std::string& name) {
  return slurp(fs::path(UNRAVEL_TEST_SOURCE_DIR) / "tests/fuzz/corpus/torch_file" / name);
}

}  // namespace

TEST(InteropHostile, EveryTruncationFailsWithOneLine) {
  for (const std::string name : {"small_sd.pt", "legacy.pt", "legacy_proto1.pt", "pickle_save.pt", "scripted.pt"}) {
    const std::string file = corpus_file(name);
    ASSERT_GT(read_all(file), 0u) << name;
    const size_t step = file.size() > 4000 ? file.size() / 200 : 1;  // every cut, or 200 evenly spaced
    const auto t0 = std::chrono::steady_clock::now();
    for (size_t cut = 0; cut < file.size(); cut += step)
      expect_error([&] { read_all(file.substr(0, cut), "cut.pt"); }, "cut.pt", name + " cut at " + std::to_string(cut));
    std::printf("  %s: %zu cuts in %.2f s\n", name.c_str(), (file.size() + step - 1) / step,
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
}

TEST(InteropHostile, FlippedBytesNeverCrashAndDataFlipsFailTheCrc) {
  const std::string file = corpus_file("small_sd.pt");
  ZipArchive zip = ZipArchive::parse(std::make_shared<const std::string>(file), "x");
  size_t read_fine = 0, crc_errors = 0, data_bytes = 0;
  for (size_t at = 0; at < file.size(); ++at) {
    std::string bad = file;
    bad[at] = static_cast<char>(bad[at] ^ 0x20);
    bool in_data = false;  // in an entry the reader reads: data.pkl or a storage
    for (const ZipEntry& e : zip.entries())
      if (e.name.find("/data") != std::string::npos) in_data = in_data || (at >= e.data_offset && at < e.data_offset + e.size);
    data_bytes += in_data;
    try {
      read_all(bad, "flipped.pt");
      ++read_fine;
      EXPECT_FALSE(in_data) << "a flipped data byte at " << at << " went unnoticed";
    } catch (const UserError& e) {
      const std::string msg = e.what();
      EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
      if (in_data) {
        EXPECT_NE(msg.find("fails its CRC-32 check (corrupt file)"), std::string::npos) << at << ": " << msg;
      }
      crc_errors += msg.find("CRC-32") != std::string::npos;
    }
  }
  std::printf("  %zu flips: %zu CRC errors (%zu data bytes), %zu read (bytes no check covers: times, padding)\n",
              file.size(), crc_errors, data_bytes, read_fine);
  EXPECT_GE(crc_errors, data_bytes);
  EXPECT_GT(data_bytes, 1000u);
}

TEST(InteropHostile, RandomBytes) {
  std::mt19937_64 rng(7);
  const std::string magic("\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.", 15);
  for (int i = 0; i < 3000; ++i) {
    std::string bytes(rng() % 2048, '\0');
    for (char& c : bytes) c = static_cast<char>(rng());
    if (i % 3 == 1) bytes = "PK\x03\x04" + bytes;
    if (i % 3 == 2) bytes = magic + bytes;
    expect_error([&] { read_all(bytes, "random.pt"); }, "random.pt", "random input " + std::to_string(i));
  }
}

TEST(InteropHostile, ZipStructure) {
  const std::string text(1000, 'a');
  const std::string good = make_zip({{"a", "stored"}, {"b", text, /*deflate=*/true}, {"c", "zip64", false, /*zip64=*/true}});
  ZipArchive z = ZipArchive::parse(std::make_shared<const std::string>(good), "good.zip");
  EXPECT_EQ(z.data("a"), "stored");
  EXPECT_EQ(z.data("b"), text);
  EXPECT_EQ(z.data("c"), "zip64");
  auto parse = [](const std::string& bytes) { return ZipArchive::parse(std::make_shared<const std::string>(bytes), "bad.zip"); };
  auto read = [&](const std::string& bytes, const std::string& entry) { parse(bytes).data(entry); };
  std::string bad = good;
  bad.replace(bad.size() - 6, 4, le(0x7FFFFFF0, 4));  // central directory offset
  expect_error([&] { parse(bad); }, "lies outside the file", "directory outside");
  bad = good;
  bad.replace(bad.size() - 12, 2, le(65535, 2));  // entries in all
  bad.replace(bad.size() - 14, 2, le(65535, 2));  // entries on this disk
  expect_error([&] { parse(bad); }, "claims 65535 entries", "absurd count");
  expect_error([&] { parse(good.substr(0, good.size() - 1)); }, "not a zip archive (no end-of-central-directory record", "no EOCD");
  expect_error([&] { parse("just text"); }, "not a zip archive", "not a zip");
  expect_error([&] { parse(make_zip({{"a", "1"}, {"a", "2"}})); }, "zip entry 'a' appears twice", "duplicate");
  expect_error([&] { parse(make_zip({{std::string("a\0b", 3), "1"}})); }, "NUL byte", "NUL in name");
  bad = make_zip({{"abc", "1"}});
  bad[30] = 'x';  // the local header's copy of the name
  expect_error([&] { parse(bad); }, "local header names another file", "local name");
  expect_error([&] { parse(make_zip({{"a", "1234"}, {"big", "xy", false, false, uint64_t{1} << 31}})); },
               "zip entry 'big' ends at byte", "truncated entry");
  expect_error([&] { read(make_zip({{"huge", text, true, /*zip64=*/true, uint64_t{1} << 40}}), "huge"); },
               "declares 1099511627776 inflated bytes", "2^40 deflate");
  expect_error([&] { read(make_zip({{"small", text, true, false, 10}}), "small"); }, "inflates to more than its declared 10 bytes",
               "deflate longer than declared");
  expect_error([&] { read(make_zip({{"long", text, true, false, 2000}}), "long"); }, "inflates to 1000 bytes, not the declared 2000",
               "deflate shorter than declared");
  bad = make_zip({{"d", text, true}});
  bad[32] = static_cast<char>(0xFF);  // inside the deflate stream: an invalid block type
  expect_error([&] { read(bad, "d"); }, "deflate data is", "corrupt deflate");
  bad = good;
  bad[31] = static_cast<char>(bad[31] ^ 1);  // the first byte of "stored"
  expect_error([&] { read(bad, "a"); }, "zip entry 'a' fails its CRC-32 check (corrupt file)", "crc");
  expect_error([&] { read(make_zip({{"e", "x", false, false, ~uint64_t{0}, /*flags=*/1}}), "e"); }, "encrypted", "encrypted");
}

TEST(InteropHostile, PickleLimits) {
  auto run = [](const std::string& pkl) { return unpickle(pkl, "bad.pkl"); };
  expect_error([&] { run("\x80\x02" + std::string(10'000'000, ']') + std::string(10'000'000, 'a') + "."); },
               "stack deeper than", "10^7 nested lists");
  expect_error([&] { run(std::string(10'000'000, '(') + "."); }, "open MARKs", "10^7 MARKs");
  expect_error([&] { run("((K\x01"); }, "ends without STOP (truncated?)", "MARK without end");
  expect_error([&] { run("(."); }, "stack underflow", "STOP on an empty frame");
  // A list inside a list inside ... 100000 deep (through the memo): read, but too deep to walk.
  std::string deep("\x80\x02]q\x00", 5);
  for (int i = 0; i < 100000; ++i) deep += std::string("]h\x00", 3) + std::string("aq\x00", 3);
  UnpickleResult r = run(deep + ".");
  expect_error([&] { named_tensors(r.document.root(), "deep.pkl"); }, "nested deeper than 256", "deep walk");
  // DUP / BINGET amplification: 64 doublings share one value; walking them all is refused.
  std::string laughs = "\x80\x02" + tensor_pkl("FloatStorage", "0", 1, 0, {1}, {1}) + std::string("q\x00", 2);
  for (int i = 0; i < 64; ++i) laughs += std::string("h\x00h\x00\x86q\x00", 7);
  UnpickleResult amp = run(laughs + ".");
  EXPECT_LT(amp.document.size(), 200u);
  expect_error([&] { read_all(torch_zip(laughs + ".", {{"0", floats({1})}})); }, "(shared references?)", "billion laughs");
  expect_error([&] { named_tensors(run("]2a.").document.root(), "cycle"); }, "nested deeper", "a list inside itself");
  // A 1 MB key set 200000 times is hashed once; it keeps its place and takes the last value.
  std::string keys = "\x80\x02}X" + le(1 << 20, 4) + std::string(1 << 20, 'k') + std::string("q\x01K\x00s", 5);
  for (int i = 0; i < 200000; ++i) keys += "h\x01K\x05s";
  const auto t0 = std::clock();  // CPU time: a busy machine cannot fail it
  UnpickleResult kd = run(keys + u("a") + "K\x07s.");
  EXPECT_LT(static_cast<double>(std::clock() - t0) / CLOCKS_PER_SEC, ut::cpu_budget(1.0));
  ASSERT_EQ(kd.document.root().entries.size(), 2u);
  EXPECT_EQ(kd.document.root().entries[0].second->integer, 5);
  EXPECT_EQ(kd.document.root().get("a")->integer, 7);
  PickleLimits few;
  few.max_ops = 1000;
  expect_error([&] { unpickle(std::string(5000, 'N') + ".", "ops.pkl", few); }, "more than 1000 opcodes", "op limit");
  // Integers: 64 bits at most, sign extension allowed.
  EXPECT_EQ(run(std::string("\x8a\x09", 2) + std::string(9, '\xff') + ".").document.root().integer, -1);
  EXPECT_EQ(run(std::string("\x8a\x08", 2) + le(0x8000000000000000ull, 8) + ".").document.root().integer, INT64_MIN);
  expect_error([&] { run(std::string("\x8a\x09", 2) + std::string(8, '\0') + "\x01."); }, "beyond 64 bits", "LONG1 65 bits");
  expect_error([&] { run("L99999999999999999999L\n."); }, "beyond 64 bits", "text LONG");
  expect_error([&] { run("\x8b\xff\xff\xff\xff."); }, "negative length", "LONG4");
  // Opcodes outside the subset, named with their offset.
  expect_error([&] { run("\x80\x02(i__main__\nX\n."); }, "opcode 0x69 ('i') at byte 3", "INST");
  expect_error([&] { run("\x80\x05\x97."); }, "opcode 0x97 at byte 2", "NEXT_BUFFER");
  expect_error([&] { run("\x80\x07."); }, "protocol 7", "protocol");
  expect_error([&] { run(std::string("X\x00\x00\x00\x80" "abc", 8)); }, "needs 2147483648 bytes but 3 are left", "long string");
  expect_error([&] { run(std::string("X\x02\x00\x00\x00\xc3\x28.", 8)); }, "UTF-8", "bad UTF-8");
  expect_error([&] { run("h\x05."); }, "memo key 5 was never set", "memo");
  expect_error([&] { run(std::string("K\x00K\x01K\x02s.", 7)); }, "sets items on 0", "SETITEM on an int");
}

TEST(InteropHostile, TensorsAndStorages) {
  auto one = [](const std::string& tensor, const std::map<std::string, std::string>& storages) {
    return read_all(torch_zip(dict_pkl({{"w", tensor}}), storages));
  };
  const std::map<std::string, std::string> four = {{"0", floats({1, 2, 3, 4})}};
  EXPECT_EQ(one(tensor_pkl("FloatStorage", "0", 4, 1, {3}, {1}), four), 12u);
  EXPECT_EQ(one(tensor_pkl("FloatStorage", "0", 4, 0, {3, 2}, {0, 1}), four), 24u);  // stride 0: 6 elements from 2
  expect_error([&] { one(tensor_pkl("FloatStorage", "0", 4, 0, {2, 3}, {3, 1}), four); },
               "reaches past the end of its storage of 4 elements", "strides outside");
  expect_error([&] { one(tensor_pkl("FloatStorage", "0", 4, 2, {3}, {1}), four); }, "reaches past the end", "offset + size");
  expect_error([&] { one(tensor_pkl("FloatStorage", "0", 4, 5, {0}, {1}), four); }, "storage offset 5 lies outside", "offset");
  expect_error([&] { one(tensor_pkl("FloatStorage", "0", 100, 0, {4}, {1}), four); },
               "storage '0' of 100 float32 needs 400 bytes but its entry holds 16", "count larger than bytes");
  expect_error([&] { one(tensor_pkl("FloatStorage", "0", int64_t{1} << 62, 0, {4}, {1}), four); }, "needs more than 2^62",
               "count overflows");
  expect_error([&] { one(tensor_pkl("FloatStorage", "0", 4, 0, {-1}, {1}), four); }, "negative value -1", "negative size");
  expect_error([&] { one(tensor_pkl("FloatStorage", "0", 4, 0, {1 << 30, 1 << 30, 1 << 30}, {0, 0, 0}), four); },
               "more than 1099511627776 elements", "numel limit");
  expect_error([&] { one(tensor_pkl("FloatStorage", "0", 4, 0, {0, int64_t{1} << 41}, {1, 1}), four); },
               "more than 1099511627776 elements", "an empty tensor with an absurd dimension");
  // Hand-made: empty tensors are contiguous whatever their other sizes and strides.
  const TensorRef empty{DType::Float32, "k", {}, 0, {0, int64_t{1} << 62, int64_t{1} << 62}, {1, int64_t{1} << 62, 1}, false, nullptr};
  EXPECT_EQ(empty.numel(), 0);
  EXPECT_TRUE(empty.is_contiguous());
  EXPECT_EQ(empty.contiguous_bytes(), "");
  expect_error([&] { one(tensor_pkl("FloatStorage", "0", 4, 0, std::vector<int64_t>(65, 1), std::vector<int64_t>(65, 1)), four); },
               "65 dimensions", "too many dims");
  expect_error([&] { one(tensor_pkl("FloatStorage", "0", 4, 0, {4}, {1, 1}), four); }, "stride 2", "size/stride ranks");
  expect_error([&] { one(tensor_pkl("QInt8Storage", "0", 4, 0, {4}, {1}), four); }, "unknown storage class", "storage class");
  expect_error([&] { one(tensor_pkl("FloatStorage", "7", 4, 0, {4}, {1}), four); }, "storage '7' has no entry archive/data/7", "missing");
  expect_error([&] { read_all(torch_zip(dict_pkl({{"a", tensor_pkl("FloatStorage", "0", 4, 0, {4}, {1})},
                                                  {"b", tensor_pkl("IntStorage", "0", 4, 0, {4}, {1})}}), four)); },
               "storage '0' is named again", "one key, two dtypes");
  expect_error([&] { read_all(torch_zip(dict_pkl({{"epoch", "K\x03"}, {"arch", u("resnet")}}), {})); },
               "hostile.pt: holds no tensors (dict of 2 at its root)", "no tensors");
  expect_error([&] { read_all(make_zip({{"archive/data.pkl", dict_pkl({})}, {"archive/byteorder", "big"}})); },
               "byte order 'big'", "big-endian");
  expect_error([&] { read_all(make_zip({{"archive/other.pkl", "."}})); }, "no <name>/data.pkl", "no data.pkl");
  expect_error([&] { read_all("hello, world"); }, "hostile.pt: not a PyTorch file", "text");
  expect_error([&] { read_all(torch_zip(dict_pkl({{"w", "(" + u("storage") + "tQ"}}), {})); },
               "a storage's persistent id has 5 or 6 fields, not 1", "short persistent id");
}

TEST(InteropHostile, LegacyLayout) {
  const std::string head = std::string("\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.", 15) +
                           "\x80\x02M\xe9\x03." + "\x80\x02}." + dict_pkl({{"w", tensor_pkl("FloatStorage", "k", 2, 0, {2}, {1})}});
  const std::string keys = "\x80\x02]" + u("k") + "a.";
  EXPECT_EQ(read_all(head + keys + le(2, 8) + floats({1, 2})), 8u);
  expect_error([&] { read_all(head + keys + le(3, 8) + floats({1, 2, 3})); }, "holds 3 elements where the pickle says 2", "count");
  expect_error([&] { read_all(head + keys + le(2, 8) + floats({1})); }, "(truncated?)", "short data");
  expect_error([&] { read_all(head + "\x80\x02]" + u("q") + "a." + le(2, 8) + floats({1, 2})); }, "unknown or listed twice", "key");
  expect_error([&] { read_all(head + "\x80\x02]." + le(2, 8)); }, "storage 'k' is used but its data is missing", "unlisted");
  expect_error([&] { read_all(std::string(head).replace(18, 2, "\xea\x03") + keys); }, "protocol version 1002", "version");
}
