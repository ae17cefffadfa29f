// crowdloss-convert: writes the COCO-style JSON the PML authors train from (one annotation per
// head, a zero-size bbox centred on the point) from any supported native dataset layout.
//
//   crowdloss-convert --format shanghaitech --root ShanghaiTech/part_A/train_data --out part_A_train.json
#include "datasets.hpp"
#include "image_io.hpp"

#include <CLI/CLI.hpp>

#include <fstream>
#include <iostream>

int main(int argc, char** argv) {
  namespace ex = crowdloss_examples;
  CLI::App app{"Convert a crowd-counting dataset to COCO-style point annotations"};
  std::string format, root, out, image_root;
  app.add_option("--format", format, "shanghaitech | qnrf | nwpu | jhu | coco")
      ->required()
      ->check(CLI::IsMember({"shanghaitech", "qnrf", "nwpu", "jhu", "coco"}));
  app.add_option("--root", root, "dataset split directory (for coco: the JSON file)")->required();
  app.add_option("--out", out, "output JSON file")->required();
  app.add_option("--image-root", image_root,
                 "directory that file_name is relative to (default: --root, or the JSON's directory)");
  CLI11_PARSE(app, argc, argv);
  try {
    const auto samples = ex::read_dataset(format, root, image_root);
    namespace fs = std::filesystem;
    const fs::path base = !image_root.empty() ? fs::path(image_root)
                          : format == "coco"  ? fs::path(root).parent_path()
                                              : fs::path(root);
    std::vector<std::array<int64_t, 2>> sizes;
    int64_t heads = 0;
    for (const auto& s : samples) {
      sizes.push_back(ex::image_size(s.image));
      heads += s.points.size(0);
    }
    std::ofstream file(out);
    if (!file) throw std::runtime_error("cannot write " + out);
    file << ex::to_coco(samples, sizes, base).dump(1) << "\n";
    std::cout << "wrote " << out << ": " << samples.size() << " images, " << heads << " heads\n";
  } catch (const std::exception& e) {
    std::cerr << "crowdloss-convert: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
