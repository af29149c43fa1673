/*
 * hearth-boot: Hearth's UEFI boot loader for arm64 and amd64 board images.
 *
 * The firmware starts it as EFI/BOOT/BOOTAA64.EFI or BOOTX64.EFI from the FAT boot
 * partition. It reads \cmdline.txt (the kernel command line, which the A/B update guard
 * rewrites) and \vmlinuz (an EFI-stub Linux kernel) from that same partition, loads the
 * kernel with LoadImage, gives it the command line as its load options and starts it.
 * On any failure it prints why, waits a few seconds and returns the error, so that the
 * firmware goes on to its next boot option.
 *
 * Freestanding: no gnu-efi, no libc. The few UEFI types it uses are declared below from
 * the UEFI specification (2.10); they have the same layout on x86_64 and aarch64, where
 * UINTN and pointers are 64 bits. Built by build.sh with clang and lld-link for the
 * *-unknown-windows targets, whose calling conventions are UEFI's (Microsoft x64 on
 * x86_64, AAPCS64 on aarch64).
 */

typedef unsigned char UINT8;
typedef unsigned short UINT16;
typedef unsigned int UINT32;
typedef unsigned long long UINT64;
typedef UINT64 UINTN;
typedef UINT16 CHAR16;
typedef UINT8 BOOLEAN;
typedef UINTN EFI_STATUS;
typedef void *EFI_HANDLE;

_Static_assert(sizeof(void *) == 8, "UEFI on x86_64 and aarch64 has 64-bit pointers");
_Static_assert(sizeof(CHAR16) == 2, "CHAR16 is UCS-2");

#define EFI_ERROR_BIT (1ULL << 63)
#define EFI_SUCCESS 0ULL
#define EFI_ERR(n) (EFI_ERROR_BIT | (n))
#define EFI_LOAD_ERROR EFI_ERR(1)
#define EFI_INVALID_PARAMETER EFI_ERR(2)
#define EFI_UNSUPPORTED EFI_ERR(3)
#define EFI_BUFFER_TOO_SMALL EFI_ERR(5)
#define EFI_OUT_OF_RESOURCES EFI_ERR(9)
#define EFI_NOT_FOUND EFI_ERR(14)
#define EFI_END_OF_FILE EFI_ERR(31)

typedef struct {
	UINT32 Data1;
	UINT16 Data2;
	UINT16 Data3;
	UINT8 Data4[8];
} EFI_GUID;

typedef struct {
	UINT64 Signature;
	UINT32 Revision;
	UINT32 HeaderSize;
	UINT32 CRC32;
	UINT32 Reserved;
} EFI_TABLE_HEADER;

typedef struct SIMPLE_TEXT_OUTPUT SIMPLE_TEXT_OUTPUT;
struct SIMPLE_TEXT_OUTPUT {
	EFI_STATUS (*Reset)(SIMPLE_TEXT_OUTPUT *This, BOOLEAN ExtendedVerification);
	EFI_STATUS (*OutputString)(SIMPLE_TEXT_OUTPUT *This, const CHAR16 *String);
	/* further members unused */
};

typedef void *UNUSED_FN;

typedef struct {
	EFI_TABLE_HEADER Hdr;
	UNUSED_FN RaiseTPL;
	UNUSED_FN RestoreTPL;
	UNUSED_FN AllocatePages;
	UNUSED_FN FreePages;
	UNUSED_FN GetMemoryMap;
	EFI_STATUS (*AllocatePool)(UINT32 PoolType, UINTN Size, void **Buffer);
	EFI_STATUS (*FreePool)(void *Buffer);
	UNUSED_FN CreateEvent;
	UNUSED_FN SetTimer;
	UNUSED_FN WaitForEvent;
	UNUSED_FN SignalEvent;
	UNUSED_FN CloseEvent;
	UNUSED_FN CheckEvent;
	UNUSED_FN InstallProtocolInterface;
	UNUSED_FN ReinstallProtocolInterface;
	UNUSED_FN UninstallProtocolInterface;
	EFI_STATUS (*HandleProtocol)(EFI_HANDLE Handle, const EFI_GUID *Protocol, void **Interface);
	void *Reserved;
	UNUSED_FN RegisterProtocolNotify;
	UNUSED_FN LocateHandle;
	UNUSED_FN LocateDevicePath;
	UNUSED_FN InstallConfigurationTable;
	EFI_STATUS (*LoadImage)(BOOLEAN BootPolicy, EFI_HANDLE ParentImageHandle, void *DevicePath,
				void *SourceBuffer, UINTN SourceSize, EFI_HANDLE *ImageHandle);
	EFI_STATUS (*StartImage)(EFI_HANDLE ImageHandle, UINTN *ExitDataSize, CHAR16 **ExitData);
	UNUSED_FN Exit;
	EFI_STATUS (*UnloadImage)(EFI_HANDLE ImageHandle);
	UNUSED_FN ExitBootServices;
	UNUSED_FN GetNextMonotonicCount;
	EFI_STATUS (*Stall)(UINTN Microseconds);
	/* further members unused */
} EFI_BOOT_SERVICES;

typedef struct {
	EFI_TABLE_HEADER Hdr;
	CHAR16 *FirmwareVendor;
	UINT32 FirmwareRevision;
	EFI_HANDLE ConsoleInHandle;
	void *ConIn;
	EFI_HANDLE ConsoleOutHandle;
	SIMPLE_TEXT_OUTPUT *ConOut;
	EFI_HANDLE StandardErrorHandle;
	SIMPLE_TEXT_OUTPUT *StdErr;
	void *RuntimeServices;
	EFI_BOOT_SERVICES *BootServices;
	UINTN NumberOfTableEntries;
	void *ConfigurationTable;
} EFI_SYSTEM_TABLE;

typedef struct {
	UINT32 Revision;
	EFI_HANDLE ParentHandle;
	EFI_SYSTEM_TABLE *SystemTable;
	EFI_HANDLE DeviceHandle;
	void *FilePath;
	void *Reserved;
	UINT32 LoadOptionsSize;
	void *LoadOptions;
	void *ImageBase;
	UINT64 ImageSize;
	UINT32 ImageCodeType;
	UINT32 ImageDataType;
	UNUSED_FN Unload;
} EFI_LOADED_IMAGE;

typedef struct EFI_FILE EFI_FILE;
struct EFI_FILE {
	UINT64 Revision;
	EFI_STATUS (*Open)(EFI_FILE *This, EFI_FILE **NewHandle, const CHAR16 *FileName, UINT64 OpenMode,
			   UINT64 Attributes);
	EFI_STATUS (*Close)(EFI_FILE *This);
	UNUSED_FN Delete;
	EFI_STATUS (*Read)(EFI_FILE *This, UINTN *BufferSize, void *Buffer);
	UNUSED_FN Write;
	UNUSED_FN GetPosition;
	UNUSED_FN SetPosition;
	EFI_STATUS (*GetInfo)(EFI_FILE *This, const EFI_GUID *InformationType, UINTN *BufferSize, void *Buffer);
	/* further members unused */
};

typedef struct EFI_SIMPLE_FILE_SYSTEM EFI_SIMPLE_FILE_SYSTEM;
struct EFI_SIMPLE_FILE_SYSTEM {
	UINT64 Revision;
	EFI_STATUS (*OpenVolume)(EFI_SIMPLE_FILE_SYSTEM *This, EFI_FILE **Root);
};

typedef struct {
	UINT16 Year;
	UINT8 Month, Day, Hour, Minute, Second, Pad1;
	UINT32 Nanosecond;
	UINT16 TimeZone;
	UINT8 Daylight, Pad2;
} EFI_TIME;

typedef struct {
	UINT64 Size;
	UINT64 FileSize;
	UINT64 PhysicalSize;
	EFI_TIME CreateTime;
	EFI_TIME LastAccessTime;
	EFI_TIME ModificationTime;
	UINT64 Attribute;
	CHAR16 FileName[1];
} EFI_FILE_INFO;

_Static_assert(sizeof(EFI_TIME) == 16, "EFI_TIME layout");
_Static_assert(__builtin_offsetof(EFI_FILE_INFO, Attribute) == 72, "EFI_FILE_INFO layout");
_Static_assert(__builtin_offsetof(EFI_LOADED_IMAGE, LoadOptionsSize) == 48, "EFI_LOADED_IMAGE layout");
_Static_assert(__builtin_offsetof(EFI_SYSTEM_TABLE, BootServices) == 96, "EFI_SYSTEM_TABLE layout");
_Static_assert(__builtin_offsetof(EFI_BOOT_SERVICES, HandleProtocol) == 24 + 16 * 8, "EFI_BOOT_SERVICES layout");
_Static_assert(__builtin_offsetof(EFI_BOOT_SERVICES, LoadImage) == 24 + 22 * 8, "EFI_BOOT_SERVICES layout");
_Static_assert(__builtin_offsetof(EFI_BOOT_SERVICES, Stall) == 24 + 28 * 8, "EFI_BOOT_SERVICES layout");

#define EFI_FILE_MODE_READ 1ULL
#define EFI_FILE_DIRECTORY 0x10ULL
#define EfiLoaderData 2

static const EFI_GUID LoadedImageProtocol = {
	0x5b1b31a1, 0x9562, 0x11d2, {0x8e, 0x3f, 0x00, 0xa0, 0xc9, 0x69, 0x72, 0x3b}};
static const EFI_GUID SimpleFileSystemProtocol = {
	0x964e5b22, 0x6459, 0x11d2, {0x8e, 0x39, 0x00, 0xa0, 0xc9, 0x69, 0x72, 0x3b}};
static const EFI_GUID FileInfoID = {
	0x09576e92, 0x6d3f, 0x11d2, {0x8e, 0x39, 0x00, 0xa0, 0xc9, 0x69, 0x72, 0x3b}};

/* Limits of what the loader reads. */
#define MAX_CMDLINE (4 * 1024)          /* bytes of \cmdline.txt */
#define MAX_KERNEL (128ULL * 1024 * 1024) /* bytes of \vmlinuz */
#define MAX_FILE_INFO 1024              /* bytes of an EFI_FILE_INFO */
#define FAIL_STALL_US (5ULL * 1000 * 1000)

static const CHAR16 CmdlinePath[] = u"\\cmdline.txt";
static const CHAR16 KernelPath[] = u"\\vmlinuz";

/* The compiler may emit calls to these for copies and clears of objects. */
void *memset(void *dst, int c, UINTN n)
{
	volatile UINT8 *d = dst;
	while (n--)
		*d++ = (UINT8)c;
	return dst;
}

void *memcpy(void *dst, const void *src, UINTN n)
{
	volatile UINT8 *d = dst;
	const UINT8 *s = src;
	while (n--)
		*d++ = *s++;
	return dst;
}

static EFI_SYSTEM_TABLE *ST;
static EFI_BOOT_SERVICES *BS;

static void puts16(const CHAR16 *s)
{
	if (ST->ConOut)
		ST->ConOut->OutputString(ST->ConOut, s);
}

/* print writes an ASCII string, turning \n into \r\n. */
static void print(const char *s)
{
	CHAR16 buf[128];
	UINTN n = 0;
	for (; *s; s++) {
		if (*s == '\n')
			buf[n++] = u'\r';
		buf[n++] = (CHAR16)(UINT8)*s;
		if (n >= sizeof buf / sizeof buf[0] - 3) {
			buf[n] = 0;
			puts16(buf);
			n = 0;
		}
	}
	buf[n] = 0;
	puts16(buf);
}

static const char *const StatusNames[] = {
	[1] = "EFI_LOAD_ERROR",        [2] = "EFI_INVALID_PARAMETER", [3] = "EFI_UNSUPPORTED",
	[4] = "EFI_BAD_BUFFER_SIZE",   [5] = "EFI_BUFFER_TOO_SMALL",  [6] = "EFI_NOT_READY",
	[7] = "EFI_DEVICE_ERROR",      [8] = "EFI_WRITE_PROTECTED",   [9] = "EFI_OUT_OF_RESOURCES",
	[10] = "EFI_VOLUME_CORRUPTED", [11] = "EFI_VOLUME_FULL",      [12] = "EFI_NO_MEDIA",
	[13] = "EFI_MEDIA_CHANGED",    [14] = "EFI_NOT_FOUND",        [15] = "EFI_ACCESS_DENIED",
	[16] = "EFI_NO_RESPONSE",      [17] = "EFI_NO_MAPPING",       [18] = "EFI_TIMEOUT",
	[19] = "EFI_NOT_STARTED",      [20] = "EFI_ALREADY_STARTED",  [21] = "EFI_ABORTED",
	[26] = "EFI_SECURITY_VIOLATION", [27] = "EFI_CRC_ERROR",      [28] = "EFI_END_OF_MEDIA",
	[31] = "EFI_END_OF_FILE",      [32] = "EFI_INVALID_LANGUAGE", [33] = "EFI_COMPROMISED_DATA",
};

static void print_hex(UINT64 v)
{
	char buf[19];
	buf[0] = '0';
	buf[1] = 'x';
	for (int i = 0; i < 16; i++)
		buf[2 + i] = "0123456789abcdef"[(v >> (60 - 4 * i)) & 0xf];
	buf[18] = 0;
	print(buf);
}

static void print_status(EFI_STATUS st)
{
	UINT64 code = st & ~EFI_ERROR_BIT;
	if ((st & EFI_ERROR_BIT) && code < sizeof StatusNames / sizeof StatusNames[0] && StatusNames[code])
		print(StatusNames[code]);
	else
		print_hex(st);
}

/* fail reports what failed, waits so a person can read it, and returns st. */
static EFI_STATUS fail(const char *what, EFI_STATUS st)
{
	print("hearth-boot: ");
	print(what);
	print(": ");
	print_status(st);
	print("\n");
	BS->Stall(FAIL_STALL_US);
	return st;
}

/*
 * read_file reads path below root into pool memory. It fails with EFI_BUFFER_TOO_SMALL
 * when the file is larger than limit, and with EFI_NOT_FOUND when it is a directory.
 */
static EFI_STATUS read_file(EFI_FILE *root, const CHAR16 *path, UINT64 limit, UINT8 **data, UINTN *size)
{
	EFI_FILE *f;
	EFI_STATUS st = root->Open(root, &f, path, EFI_FILE_MODE_READ, 0);
	if (st != EFI_SUCCESS)
		return st;
	EFI_FILE_INFO *info = 0;
	UINTN n = MAX_FILE_INFO;
	st = BS->AllocatePool(EfiLoaderData, n, (void **)&info);
	if (st != EFI_SUCCESS)
		goto out;
	st = f->GetInfo(f, &FileInfoID, &n, info);
	if (st != EFI_SUCCESS)
		goto out;
	if (info->Attribute & EFI_FILE_DIRECTORY) {
		st = EFI_NOT_FOUND;
		goto out;
	}
	if (info->FileSize > limit) {
		st = EFI_BUFFER_TOO_SMALL;
		goto out;
	}
	UINTN want = (UINTN)info->FileSize;
	UINT8 *buf = 0;
	st = BS->AllocatePool(EfiLoaderData, want + 1, (void **)&buf);
	if (st != EFI_SUCCESS)
		goto out;
	UINTN got = 0;
	while (got < want) {
		UINTN chunk = want - got;
		if (chunk > 16 * 1024 * 1024)
			chunk = 16 * 1024 * 1024;
		st = f->Read(f, &chunk, buf + got);
		if (st != EFI_SUCCESS)
			break;
		if (chunk == 0) {
			st = EFI_END_OF_FILE;
			break;
		}
		got += chunk;
	}
	if (st != EFI_SUCCESS) {
		BS->FreePool(buf);
		goto out;
	}
	buf[got] = 0;
	*data = buf;
	*size = got;
out:
	if (info)
		BS->FreePool(info);
	f->Close(f);
	return st;
}

/*
 * cmdline_ucs2 turns the ASCII command line in text (n bytes) into a NUL-terminated UCS-2
 * string in pool memory: line breaks and tabs become spaces, trailing white space goes,
 * and any other control or non-ASCII byte is an error.
 */
static EFI_STATUS cmdline_ucs2(const UINT8 *text, UINTN n, CHAR16 **out, UINTN *bytes)
{
	while (n > 0 && (text[n - 1] == ' ' || text[n - 1] == '\t' || text[n - 1] == '\r' || text[n - 1] == '\n'))
		n--;
	if (n == 0)
		return EFI_NOT_FOUND;
	CHAR16 *s;
	EFI_STATUS st = BS->AllocatePool(EfiLoaderData, (n + 1) * sizeof(CHAR16), (void **)&s);
	if (st != EFI_SUCCESS)
		return st;
	for (UINTN i = 0; i < n; i++) {
		UINT8 c = text[i];
		if (c == '\t' || c == '\r' || c == '\n')
			c = ' ';
		if (c < 0x20 || c > 0x7e) {
			BS->FreePool(s);
			return EFI_INVALID_PARAMETER;
		}
		s[i] = c;
	}
	s[n] = 0;
	*out = s;
	*bytes = (n + 1) * sizeof(CHAR16);
	return EFI_SUCCESS;
}

EFI_STATUS efi_main(EFI_HANDLE image, EFI_SYSTEM_TABLE *systab)
{
	ST = systab;
	BS = systab->BootServices;

	EFI_LOADED_IMAGE *self;
	EFI_STATUS st = BS->HandleProtocol(image, &LoadedImageProtocol, (void **)&self);
	if (st != EFI_SUCCESS)
		return fail("cannot get the loaded image protocol", st);
	EFI_SIMPLE_FILE_SYSTEM *fs;
	st = BS->HandleProtocol(self->DeviceHandle, &SimpleFileSystemProtocol, (void **)&fs);
	if (st != EFI_SUCCESS)
		return fail("cannot open the boot partition's file system", st);
	EFI_FILE *root;
	st = fs->OpenVolume(fs, &root);
	if (st != EFI_SUCCESS)
		return fail("cannot open the boot partition's volume", st);

	UINT8 *text;
	UINTN textSize;
	st = read_file(root, CmdlinePath, MAX_CMDLINE, &text, &textSize);
	if (st != EFI_SUCCESS) {
		root->Close(root);
		return fail("cannot read \\cmdline.txt", st);
	}
	CHAR16 *cmdline;
	UINTN cmdlineSize;
	st = cmdline_ucs2(text, textSize, &cmdline, &cmdlineSize);
	BS->FreePool(text);
	if (st != EFI_SUCCESS) {
		root->Close(root);
		return fail("\\cmdline.txt is empty or not printable ASCII", st);
	}

	UINT8 *kernel;
	UINTN kernelSize;
	st = read_file(root, KernelPath, MAX_KERNEL, &kernel, &kernelSize);
	root->Close(root);
	if (st != EFI_SUCCESS) {
		BS->FreePool(cmdline);
		return fail("cannot read \\vmlinuz", st);
	}

	EFI_HANDLE kimage;
	st = BS->LoadImage(0, image, 0, kernel, kernelSize, &kimage);
	BS->FreePool(kernel);
	if (st != EFI_SUCCESS) {
		BS->FreePool(cmdline);
		return fail("cannot load \\vmlinuz", st);
	}
	EFI_LOADED_IMAGE *kli;
	st = BS->HandleProtocol(kimage, &LoadedImageProtocol, (void **)&kli);
	if (st != EFI_SUCCESS) {
		BS->UnloadImage(kimage);
		BS->FreePool(cmdline);
		return fail("cannot get the kernel's loaded image protocol", st);
	}
	kli->LoadOptions = cmdline;
	kli->LoadOptionsSize = (UINT32)cmdlineSize;

	print("hearth-boot: starting \\vmlinuz\n");
	st = BS->StartImage(kimage, 0, 0);
	/* Only a kernel that fails before ExitBootServices comes back here. */
	BS->FreePool(cmdline);
	return fail("\\vmlinuz returned", st == EFI_SUCCESS ? EFI_LOAD_ERROR : st);
}
