// Image decoding: JPEG (libjpeg-turbo, EXIF orientation via libexif) and PNG (libpng), both
// converted to 8-bit RGB the way Pillow's Image.open(...).convert("RGB") does.
//
// Both C libraries report fatal errors by longjmp. Every function that calls setjmp
// (run_jpeg, run_png) keeps all its mutable state in a Job struct owned by its caller, holds
// no C++ object with a destructor, and does nothing but call the library; the caller turns
// the outcome into a Status and the Job's destructor frees the library objects on every path.
#include <fcntl.h>
#include <libexif/exif-data.h>
#include <png.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

// jpeglib.h needs size_t and FILE declared first.
#include <jerror.h>
#include <jpeglib.h>

#include "image/image.h"

namespace pg::image {
namespace {

constexpr int64_t kMaxFileBytes = int64_t{512} << 20;  // load_image refuses larger files

std::string hex_bytes(const uint8_t* data, size_t size, size_t max_count) {
  std::string out;
  char buf[4];
  for (size_t i = 0; i < size && i < max_count; ++i) {
    std::snprintf(buf, sizeof(buf), i ? " %02x" : "%02x", data[i]);
    out += buf;
  }
  return out;
}

Status zero_size_error(const std::string& name) {
  return invalid_argument(name + ": image has zero width or height");
}

// The decompression-bomb guard, applied to header dimensions before any pixel allocation.
bool within_limits(int64_t width, int64_t height, const DecodeLimits& limits) {
  return width > 0 && height > 0 && width <= limits.max_side && height <= limits.max_side &&
         width * height <= limits.max_pixels;
}

Status check_dimensions(int64_t width, int64_t height, const std::string& name,
                        const DecodeLimits& limits) {
  if (width <= 0 || height <= 0) return zero_size_error(name);
  if (!within_limits(width, height, limits)) {
    return out_of_range(name + ": image is " + std::to_string(width) + "x" +
                        std::to_string(height) + ", beyond the decoding limit (at most " +
                        std::to_string(limits.max_side) + " pixels a side and " +
                        std::to_string(limits.max_pixels) + " pixels in all)");
  }
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------
// EXIF orientation, applied as Pillow's ImageOps.exif_transpose does.

// The orientation tag (0x0112) of IFD0 in an APP1 payload ("Exif\0\0" + TIFF), or 1.
int exif_orientation(const uint8_t* payload, size_t size) {
  ExifData* ed = exif_data_new();
  if (ed == nullptr) return 1;
  // Parse as stored: no "fixing" (which may add or rewrite mandatory tags).
  exif_data_unset_option(ed, EXIF_DATA_OPTION_FOLLOW_SPECIFICATION);
  exif_data_load_data(ed, payload, static_cast<unsigned int>(size));
  int orientation = 1;
  ExifEntry* e = exif_content_get_entry(ed->ifd[EXIF_IFD_0], EXIF_TAG_ORIENTATION);
  if (e != nullptr && e->components >= 1 && e->data != nullptr) {
    ExifByteOrder order = exif_data_get_byte_order(ed);
    if (e->format == EXIF_FORMAT_SHORT && e->size >= 2) {
      orientation = exif_get_short(e->data, order);
    } else if (e->format == EXIF_FORMAT_LONG && e->size >= 4) {
      orientation = static_cast<int>(exif_get_long(e->data, order));
    }
  }
  exif_data_unref(ed);
  return orientation;
}

// Pillow's exif_transpose methods: 2 FLIP_LEFT_RIGHT, 3 ROTATE_180, 4 FLIP_TOP_BOTTOM,
// 5 TRANSPOSE, 6 ROTATE_270 (90 degrees clockwise), 7 TRANSVERSE, 8 ROTATE_90 (counter-
// clockwise). For an input of W x H, output pixel (x, y) reads input pixel (sx, sy):
//   2: (W-1-x, y)    3: (W-1-x, H-1-y)    4: (x, H-1-y)
//   5: (y, x)        6: (y, H-1-x)        7: (W-1-y, H-1-x)    8: (W-1-y, x)
// 5..8 swap width and height. Other values (1, missing, invalid) leave the image as it is.
Image apply_orientation(Image in, int orientation) {
  if (orientation < 2 || orientation > 8) return in;
  const int w = in.width, h = in.height;
  const bool swap = orientation >= 5;
  Image out;
  out.width = swap ? h : w;
  out.height = swap ? w : h;
  out.rgb.resize(in.rgb.size());
  for (int y = 0; y < out.height; ++y) {
    for (int x = 0; x < out.width; ++x) {
      int sx = x, sy = y;
      switch (orientation) {
        case 2:
          sx = w - 1 - x;
          sy = y;
          break;
        case 3:
          sx = w - 1 - x;
          sy = h - 1 - y;
          break;
        case 4:
          sx = x;
          sy = h - 1 - y;
          break;
        case 5:
          sx = y;
          sy = x;
          break;
        case 6:
          sx = y;
          sy = h - 1 - x;
          break;
        case 7:
          sx = w - 1 - y;
          sy = h - 1 - x;
          break;
        case 8:
          sx = w - 1 - y;
          sy = x;
          break;
      }
      const uint8_t* src = &in.rgb[(static_cast<size_t>(sy) * w + sx) * 3];
      uint8_t* dst = &out.rgb[(static_cast<size_t>(y) * out.width + x) * 3];
      dst[0] = src[0];
      dst[1] = src[1];
      dst[2] = src[2];
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// JPEG

struct JpegErrorMgr {
  jpeg_error_mgr pub;  // first member: libjpeg sees a jpeg_error_mgr*
  jmp_buf jump;
  int msg_code = 0;
  char message[JMSG_LENGTH_MAX] = {};
};

[[noreturn]] void jpeg_on_error(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<JpegErrorMgr*>(cinfo->err);
  err->msg_code = cinfo->err->msg_code;
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

// Warnings (level -1) are counted and ignored, as Pillow does, except "Premature end of
// JPEG file": jpeg_mem_src then pads with a fake EOI and libjpeg would return grey pixels.
void jpeg_on_message(j_common_ptr cinfo, int msg_level) {
  if (msg_level >= 0) return;  // trace messages
  if (cinfo->err->msg_code == JWRN_JPEG_EOF) jpeg_on_error(cinfo);
  cinfo->err->num_warnings++;
}

enum class Outcome { kOk, kLibraryError, kBadDimensions, kNoImage, kUnsupported, kShort };

struct JpegJob {
  const uint8_t* data = nullptr;
  size_t size = 0;
  DecodeLimits limits;
  jpeg_decompress_struct cinfo = {};
  JpegErrorMgr err;
  bool created = false;
  bool cmyk = false;            // decoded as 4-channel CMYK (from CMYK or YCCK)
  std::vector<uint8_t> pixels;  // width * height * (3 or 4), libjpeg's output

  ~JpegJob() {
    if (created) jpeg_destroy_decompress(&cinfo);
  }
};

// Only libjpeg calls and plain stores into *job between setjmp and any longjmp.
Outcome run_jpeg(JpegJob* job) {
  jpeg_decompress_struct* cinfo = &job->cinfo;
  cinfo->err = jpeg_std_error(&job->err.pub);
  job->err.pub.error_exit = jpeg_on_error;
  job->err.pub.emit_message = jpeg_on_message;
  if (setjmp(job->err.jump)) return Outcome::kLibraryError;
  jpeg_create_decompress(cinfo);
  job->created = true;
  jpeg_mem_src(cinfo, job->data, static_cast<unsigned long>(job->size));
  jpeg_save_markers(cinfo, JPEG_APP0 + 1, 0xffff);  // APP1: EXIF
  if (jpeg_read_header(cinfo, TRUE) != JPEG_HEADER_OK) return Outcome::kNoImage;
  // The header is read; nothing is allocated for pixels yet.
  if (!within_limits(cinfo->image_width, cinfo->image_height, job->limits)) {
    return Outcome::kBadDimensions;
  }
  // Default decompression settings (ISLOW DCT, fancy upsampling), as Pillow uses.
  switch (cinfo->jpeg_color_space) {
    case JCS_GRAYSCALE:
    case JCS_YCbCr:
    case JCS_RGB: cinfo->out_color_space = JCS_RGB; break;
    case JCS_CMYK:
    case JCS_YCCK:
      cinfo->out_color_space = JCS_CMYK;
      job->cmyk = true;
      break;
    default: return Outcome::kUnsupported;
  }
  jpeg_start_decompress(cinfo);  // reads every scan of a progressive file
  const size_t row_bytes =
      static_cast<size_t>(cinfo->output_width) * static_cast<size_t>(cinfo->output_components);
  if (cinfo->output_components != (job->cmyk ? 4 : 3)) return Outcome::kUnsupported;
  job->pixels.resize(row_bytes * cinfo->output_height);
  while (cinfo->output_scanline < cinfo->output_height) {
    JSAMPROW row = job->pixels.data() + row_bytes * cinfo->output_scanline;
    if (jpeg_read_scanlines(cinfo, &row, 1) != 1) return Outcome::kShort;
  }
  // No jpeg_finish_decompress: what follows the last scanline (EOI) is not needed.
  return Outcome::kOk;
}

Result<Image> decode_jpeg(const uint8_t* data, size_t size, const std::string& name,
                          const DecodeLimits& limits) {
  JpegJob job;
  job.data = data;
  job.size = size;
  job.limits = limits;
  const Outcome outcome = run_jpeg(&job);
  const jpeg_decompress_struct& cinfo = job.cinfo;
  switch (outcome) {
    case Outcome::kOk: break;
    case Outcome::kLibraryError:
      if (job.err.msg_code == JWRN_JPEG_EOF) {
        return data_loss(name + ": truncated JPEG (" + job.err.message + ")");
      }
      if (job.err.msg_code == JERR_EMPTY_IMAGE) return zero_size_error(name);
      return invalid_argument(name + ": cannot decode JPEG: " + job.err.message);
    case Outcome::kBadDimensions:
      return check_dimensions(cinfo.image_width, cinfo.image_height, name, limits);
    case Outcome::kNoImage: return invalid_argument(name + ": JPEG stream holds no image");
    case Outcome::kUnsupported:
      return unimplemented(name + ": unsupported JPEG colour space " +
                           std::to_string(static_cast<int>(cinfo.jpeg_color_space)) + " with " +
                           std::to_string(cinfo.num_components) + " components");
    case Outcome::kShort:
      return data_loss(name + ": truncated JPEG (" + std::to_string(cinfo.output_scanline) +
                       " of " + std::to_string(cinfo.output_height) + " rows decoded)");
  }

  // Pillow keeps the first APP1 segment that starts with "Exif\0\0".
  int orientation = 1;
  for (jpeg_saved_marker_ptr m = cinfo.marker_list; m != nullptr; m = m->next) {
    if (m->marker == JPEG_APP0 + 1 && m->data_length >= 6 &&
        std::memcmp(m->data, "Exif\0\0", 6) == 0) {
      orientation = exif_orientation(m->data, m->data_length);
      break;
    }
  }

  Image img;
  img.width = static_cast<int>(cinfo.output_width);
  img.height = static_cast<int>(cinfo.output_height);
  if (!job.cmyk) {
    img.rgb = std::move(job.pixels);
  } else {
    // Pillow decodes every 4-component JPEG with rawmode "CMYK;I" (Adobe convention:
    // stored values inverted), then convert("RGB") applies cmyk2rgb:
    //   nk = 255 - K;  R = clip8(nk - MULDIV255(C, nk))  (same for G, B)
    //   MULDIV255(a, b) = ((t >> 8) + t) >> 8 with t = a * b + 128.
    const size_t n = static_cast<size_t>(img.width) * img.height;
    img.rgb.resize(n * 3);
    for (size_t i = 0; i < n; ++i) {
      const uint8_t* p = &job.pixels[i * 4];
      const int nk = p[3];  // 255 - (255 - stored K)
      for (int c = 0; c < 3; ++c) {
        const int cc = 255 - p[c];
        const int t = cc * nk + 128;
        const int v = nk - (((t >> 8) + t) >> 8);
        img.rgb[i * 3 + c] = static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
      }
    }
  }
  return apply_orientation(std::move(img), orientation);
}

// ---------------------------------------------------------------------------------------
// PNG

struct PngJob {
  const uint8_t* data = nullptr;
  size_t size = 0;
  size_t pos = 0;
  DecodeLimits limits;
  png_structp png = nullptr;
  png_infop info = nullptr;
  bool truncated = false;
  char message[256] = {};
  png_uint_32 width = 0, height = 0;
  int bit_depth = 0, color_type = 0;  // as stored (before transformations)
  int channels = 0, out_depth = 0;    // after palette / low-bit-grey expansion
  std::vector<uint8_t> pixels;        // height rows of width * channels * (out_depth / 8)
  std::vector<png_bytep> rows;

  ~PngJob() {
    if (png != nullptr) png_destroy_read_struct(&png, info != nullptr ? &info : nullptr, nullptr);
  }
};

void png_on_error(png_structp png, png_const_charp msg) {
  auto* job = static_cast<PngJob*>(png_get_error_ptr(png));
  std::snprintf(job->message, sizeof(job->message), "%s", msg);
  png_longjmp(png, 1);
}

void png_on_warning(png_structp, png_const_charp) {}  // Pillow ignores them too

void png_read_from_memory(png_structp png, png_bytep out, size_t length) {
  auto* job = static_cast<PngJob*>(png_get_io_ptr(png));
  if (length > job->size - job->pos) {
    job->truncated = true;
    png_error(png, "unexpected end of data");
  }
  std::memcpy(out, job->data + job->pos, length);
  job->pos += length;
}

Outcome run_png(PngJob* job) {
  png_structp png = job->png;
  if (setjmp(png_jmpbuf(png))) return Outcome::kLibraryError;
  png_set_read_fn(png, job, png_read_from_memory);
  png_read_info(png, job->info);
  int interlace = 0;
  png_get_IHDR(png, job->info, &job->width, &job->height, &job->bit_depth, &job->color_type,
               &interlace, nullptr, nullptr);
  if (!within_limits(job->width, job->height, job->limits)) {
    return Outcome::kBadDimensions;
  }
  // Transformations: palette -> RGB (with alpha when there is a tRNS chunk), 1/2/4-bit grey
  // -> 8-bit (scaled like Pillow's L;2 / L;4 / "1" unpackers), Adam7 de-interlacing.
  // 16-bit samples and alpha are kept and converted below, as Pillow's modes need.
  if (job->color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (job->color_type == PNG_COLOR_TYPE_GRAY && job->bit_depth < 8) {
    png_set_expand_gray_1_2_4_to_8(png);
  }
  png_set_interlace_handling(png);
  png_read_update_info(png, job->info);
  job->channels = png_get_channels(png, job->info);
  job->out_depth = png_get_bit_depth(png, job->info);
  const size_t row_bytes = png_get_rowbytes(png, job->info);
  if (job->channels < 1 || job->channels > 4 || (job->out_depth != 8 && job->out_depth != 16) ||
      row_bytes != static_cast<size_t>(job->width) * job->channels * (job->out_depth / 8)) {
    return Outcome::kUnsupported;
  }
  job->pixels.resize(row_bytes * job->height);
  job->rows.resize(job->height);
  for (png_uint_32 y = 0; y < job->height; ++y) job->rows[y] = &job->pixels[row_bytes * y];
  png_read_image(png, job->rows.data());
  // No png_read_end: chunks after the image data are not needed.
  return Outcome::kOk;
}

Result<Image> decode_png(const uint8_t* data, size_t size, const std::string& name,
                         const DecodeLimits& limits) {
  // IHDR directly follows the 8-byte signature: check its size before libpng (which refuses
  // a zero size with a less helpful message) allocates anything.
  if (size >= 24 && std::memcmp(data + 12, "IHDR", 4) == 0) {
    auto be32 = [&](size_t o) {
      return (int64_t{data[o]} << 24) | (data[o + 1] << 16) | (data[o + 2] << 8) | data[o + 3];
    };
    PG_RETURN_IF_ERROR(check_dimensions(be32(16), be32(20), name, limits));
  }
  PngJob job;
  job.data = data;
  job.size = size;
  job.limits = limits;
  job.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &job, png_on_error, png_on_warning);
  if (job.png == nullptr) return internal_error(name + ": cannot create a libpng reader");
  job.info = png_create_info_struct(job.png);
  if (job.info == nullptr) return internal_error(name + ": cannot create a libpng reader");

  switch (run_png(&job)) {
    case Outcome::kOk: break;
    case Outcome::kLibraryError:
      if (job.truncated) return data_loss(name + ": truncated PNG (" + job.message + ")");
      return invalid_argument(name + ": cannot decode PNG: " + job.message);
    case Outcome::kBadDimensions: return check_dimensions(job.width, job.height, name, limits);
    default:
      return unimplemented(name + ": unsupported PNG layout (colour type " +
                           std::to_string(job.color_type) + ", bit depth " +
                           std::to_string(job.bit_depth) + ")");
  }

  // convert("RGB") as Pillow does: grey is replicated, alpha dropped without compositing,
  // tRNS ignored. 16-bit samples keep their high byte (rawmodes RGB;16B, RGBA;16B, LA;16B),
  // except 16-bit grey without alpha, which Pillow opens as mode "I" and converts by
  // clamping the value to 0..255 (i2rgb).
  Image img;
  img.width = static_cast<int>(job.width);
  img.height = static_cast<int>(job.height);
  const size_t n = static_cast<size_t>(img.width) * img.height;
  img.rgb.resize(n * 3);
  const int ch = job.channels;
  const bool wide = job.out_depth == 16;
  const bool clamp_grey16 = wide && job.color_type == PNG_COLOR_TYPE_GRAY;
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* p = &job.pixels[i * ch * (wide ? 2 : 1)];
    uint8_t* o = &img.rgb[i * 3];
    if (clamp_grey16) {
      const int v = (p[0] << 8) | p[1];
      o[0] = o[1] = o[2] = static_cast<uint8_t>(v > 255 ? 255 : v);
      continue;
    }
    auto sample = [&](int c) { return p[wide ? 2 * c : c]; };  // high byte when 16-bit
    if (ch <= 2) {
      o[0] = o[1] = o[2] = sample(0);
    } else {
      o[0] = sample(0);
      o[1] = sample(1);
      o[2] = sample(2);
    }
  }
  return img;
}

}  // namespace

Result<Image> decode_image(const uint8_t* data, size_t size, const std::string& name,
                           const DecodeLimits& limits) {
  static constexpr uint8_t kJpegMagic[] = {0xFF, 0xD8, 0xFF};
  static constexpr uint8_t kPngMagic[] = {0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A};
  if (size >= sizeof(kJpegMagic) && std::memcmp(data, kJpegMagic, sizeof(kJpegMagic)) == 0) {
    return decode_jpeg(data, size, name, limits);
  }
  if (size >= sizeof(kPngMagic) && std::memcmp(data, kPngMagic, sizeof(kPngMagic)) == 0) {
    return decode_png(data, size, name, limits);
  }
  if (size == 0) return invalid_argument(name + ": not a JPEG or PNG image (empty, 0 bytes)");
  return invalid_argument(
      name + ": not a JPEG or PNG image (first bytes: " + hex_bytes(data, size, 8) + ")");
}

Result<Image> load_image(const std::string& path, const DecodeLimits& limits) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int e = errno;
    const std::string why = std::strerror(e);
    if (e == ENOENT) return not_found("cannot open image " + path + ": " + why);
    return invalid_argument("cannot open image " + path + ": " + why);
  }
  struct FdCloser {
    int fd;
    ~FdCloser() { ::close(fd); }
  } closer{fd};
  struct stat st = {};
  if (::fstat(fd, &st) != 0) {
    return invalid_argument("cannot stat image " + path + ": " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) return invalid_argument(path + ": not a regular file");
  if (st.st_size > kMaxFileBytes) {
    return out_of_range(path + ": file is " + std::to_string(st.st_size) +
                        " bytes, larger than the " + std::to_string(kMaxFileBytes >> 20) +
                        " MB limit for images");
  }
  std::vector<uint8_t> bytes(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t got = ::read(fd, bytes.data() + done, bytes.size() - done);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return invalid_argument("cannot read image " + path + ": " + std::strerror(errno));
    if (got == 0) break;  // the file shrank while we read it
    done += static_cast<size_t>(got);
  }
  bytes.resize(done);
  return decode_image(bytes.data(), bytes.size(), path, limits);
}

}  // namespace pg::image
